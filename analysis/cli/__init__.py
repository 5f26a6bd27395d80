"""``coatnet analyze``, ``coatnet study``, ``coatnet study-layouts``: plug-ins of the coatnet command
line. Imports any of analysis."""
