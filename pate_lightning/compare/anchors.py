"""Published MNIST results drawn as labelled reference points beside the routes (delta 1e-5 unless noted)."""

from __future__ import annotations

# name, year, epsilon, student accuracy, what the epsilon covers
ANCHORS: tuple[dict, ...] = (
    {"name": "FETA-Pro", "year": 2024, "epsilon": 1.0, "accuracy": 0.9676, "note": "end to end"},
    {"name": "FETA-Pro", "year": 2024, "epsilon": 10.0, "accuracy": 0.9836, "note": "end to end"},
    {"name": "DPDM", "year": 2023, "epsilon": 1.0, "accuracy": 0.953, "note": "end to end"},
    {"name": "DPDM", "year": 2023, "epsilon": 10.0, "accuracy": 0.981, "note": "end to end"},
    {"name": "Confident-GNMax", "year": 2018, "epsilon": 1.97, "accuracy": 0.985, "note": "labels, data-dependent"},
    {"name": "G-PATE / DataLens", "year": 2021, "epsilon": 10.0, "accuracy": 0.807, "note": "end to end, 80.7-80.9%"},
    {"name": "opacus MNIST example", "year": 2021, "epsilon": 1.16, "accuracy": 0.946, "note": "DP-SGD"},
    {"name": "opacus MNIST example", "year": 2021, "epsilon": 2.91, "accuracy": 0.968, "note": "DP-SGD"},
    {"name": "DPSUR", "year": 2024, "epsilon": 1.0, "accuracy": 0.979, "note": "DP-SGD"},
    {"name": "DPSUR", "year": 2024, "epsilon": 2.0, "accuracy": 0.987, "note": "DP-SGD"},
    {"name": "Tramer & Boneh", "year": 2021, "epsilon": 3.0, "accuracy": 0.987, "note": "DP-SGD"},
)
