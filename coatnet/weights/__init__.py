"""Weights: safetensors checkpoints, the hub, timm's weights imported exactly, class names, and the
built-in checkpoints. Imports coatnet.model and coatnet's file helpers."""
