"""Generators: VAE architectures (MLP, conv; conditional), the decoder contract, and the families."""
