"""Data: datasets (Fashion-MNIST, CIFAR-10 binary, image folders) and batches prepared for a model.
Imports nothing else of coatnet but its file helpers."""
