"""The ``coatnet`` command line: model-level commands, and plug-ins from higher layers (entry points).
Imports any of coatnet."""
