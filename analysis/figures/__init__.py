"""Plotly figures of every result: the figure language (plots), maps, explanations, studies. Imports the
results' modules; never the report."""
