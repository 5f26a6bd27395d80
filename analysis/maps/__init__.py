"""Forward maps of a model: attention, its statistics and rollout, kernels, receptive fields, frequency,
features, CKA, and pre vs post comparison. Imports analysis.core."""
