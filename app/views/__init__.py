"""The app's pages, one module each; each defines ``render_page()`` and runs it only when Streamlit
executes the file. The folder is not called ``pages/``: that name switches Streamlit to its older
multipage mode, which runs a page without the sidebar of ``main.py``."""
