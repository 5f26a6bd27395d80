"""Training: the loop, its resume state and model card, evaluation, several processes, and the layout
study's runs. Imports coatnet.model, coatnet.weights and coatnet.data."""
