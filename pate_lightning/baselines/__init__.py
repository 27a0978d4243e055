"""Baselines a user would pick instead of PATE: the student trained directly on the private data with DP-SGD."""
