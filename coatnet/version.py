"""The version of coatnet-lens, one place for the package, its checkpoints and its study files."""

__version__ = "0.1.0"
