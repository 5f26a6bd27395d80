"""The model: configs, layers, attention, blocks, the network, its variants and costs, the inference
build, and the per-call contexts read inside the blocks (recording, interventions, private random).
Imports nothing else of coatnet."""
