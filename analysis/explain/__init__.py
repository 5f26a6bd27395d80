"""Explanations: attributions (captum), class-specific relevance, and their faithfulness. Imports
analysis.core and analysis.maps."""

from analysis.explain import methods as _methods  # registers the built-in methods, in order

del _methods
