"""Causal analyses: activation patching between two runs, at the named points of :mod:`coatnet.model.tracing`.
Imports analysis.core."""
