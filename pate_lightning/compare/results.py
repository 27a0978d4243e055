"""One route's row of ``results.json`` from its replicates' report entries (pure: no file is read here)."""

from __future__ import annotations

import statistics
from typing import Any, Optional, Sequence

from pate_lightning.compare.privacy import composed_epsilon


def _mean(values: Sequence[Optional[float]]) -> Optional[float]:
    known = [v for v in values if v is not None]
    return statistics.fmean(known) if known else None


def _std(values: Sequence[Optional[float]]) -> Optional[float]:
    known = [v for v in values if v is not None]
    return statistics.stdev(known) if len(known) > 1 else (0.0 if known else None)


def _public_only(run: dict[str, Any]) -> Optional[float]:
    pretraining = (run.get("student") or {}).get("pretraining")
    return pretraining.get("test_accuracy") if pretraining else (run.get("student") or {}).get("public_only_accuracy")


def route_row(
    name: str, runs: Sequence[dict[str, Any]], generator_stages: Optional[Sequence[Any]],
    stage_seconds: dict[str, float], device: str,
) -> dict[str, Any]:
    """The route's figures over its replicates: privacy (the first run's a-priori figures: every replicate asks
    with the same public settings), counts, the student's mean and spread, the composed epsilon."""
    first = runs[0]["privacy"]
    accuracies = [(run.get("student") or {}).get("test_accuracy") for run in runs]
    labels_only = composed_epsilon(runs, None, first["delta"], first["conversion"])
    # the pool's stages are charged on every scope: a non-DP one leaves ``whole`` unbounded, and a DP generator
    # whose settings were tuned on private data still spends its epsilon (the scope says what the figure claims)
    whole = composed_epsilon(runs, generator_stages, first["delta"], first["conversion"])
    if first["privacy_scope"] == "labels_only_queries_not_private":
        whole = None  # the images leak: no replicate count makes the route end to end
    return {
        "name": name,
        "scope": first["privacy_scope"],
        "private": all(run["privacy"].get("private") for run in runs),
        "delta": first["delta"],
        "conversion": first["conversion"],
        "mechanism": runs[0].get("mechanism_description", runs[0].get("route")),
        "queries_asked": runs[0].get("queries_asked"),
        "queries_answered": [run.get("queries_answered") for run in runs],
        "epsilon_a_priori": first.get("epsilon_labels") if "mechanism" in runs[0] else first["epsilon_end_to_end"],
        "epsilon_released": [run["privacy"].get("epsilon_data_dependent_released") for run in runs],
        "epsilon_end_to_end": first.get("epsilon_end_to_end"),
        "epsilon_labels": first.get("epsilon_labels"),
        "student_accuracy": accuracies,
        "student_accuracy_mean": _mean(accuracies),
        "student_accuracy_std": _std(accuracies),
        "public_only_accuracy": _mean([_public_only(run) for run in runs]),
        "replicates": len(runs),
        # all K releases together: end to end where the route is, else the labels' (the images are not covered)
        "composed_epsilon": whole if whole is not None else labels_only,
        "composed_epsilon_covers": first["privacy_scope"] if whole is not None else "labels",
        "composed_epsilon_end_to_end": whole,
        "composed_epsilon_labels": labels_only,
        "seconds_per_stage": stage_seconds,
        "seconds_per_replicate": [run.get("seconds") for run in runs],
        "device": device,
    }
