"""Studies over datasets and models: interventions, the dataset study, the layout comparison; the shipped
results lie in ``results/``. Imports analysis.core, maps and explain."""
