"""One module per page; each defines ``render()`` and runs it only when Streamlit executes the file."""
