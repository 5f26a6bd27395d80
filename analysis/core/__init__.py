"""What every analysis stands on: running a model for one call, blocks and geometry, inputs, the query,
predictions, models by name, and JSON summaries. Imports coatnet only."""
