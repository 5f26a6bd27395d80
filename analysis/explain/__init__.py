"""Explanations: attributions (captum), class-specific relevance, and their faithfulness. Imports
analysis.core and analysis.maps."""
