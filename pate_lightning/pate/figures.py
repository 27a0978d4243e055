"""Pictures of the PATE stage, from ``pate/report.json`` only (publishable values).

``epsilon_figure``: the a-priori epsilon against the number of queries asked, one curve per run, a
function of the mechanism's public parameters (every asked query charged, as the headline figure).
``student_figure``: the student's test accuracy per class.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import matplotlib

matplotlib.use("Agg")  # headless: files only
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from pate_lightning.privacy import RDPAccountant  # noqa: E402
from pate_lightning.privacy.analysis import rdp_to_dp  # noqa: E402

CURVE_POINTS = 60


def epsilon_by_queries(mechanism: str, parameters: dict[str, float], counts: list[int], delta: float,
                       conversion: str = "balle2020") -> list[float]:
    """The data-independent epsilon at ``delta`` after each number of queries in ``counts``.

    One query's a-priori RDP curve, times the count (RDP composes by sum over queries), converted at
    the best order: the value the report gives as ``epsilon_data_independent`` for that many queries.

    >>> accountant = RDPAccountant()
    >>> accountant.step(mechanism="gnmax", sigma=40.0, num_queries=100)
    >>> eps = epsilon_by_queries("gnmax", {"sigma": 40.0}, [1, 50, 100], 1e-5)
    >>> eps[2] == accountant.get_epsilon(1e-5)["epsilon_data_independent"], eps[0] < eps[1] < eps[2]
    (True, True)
    """
    accountant = RDPAccountant()
    answered = {"answered": [True]} if mechanism == "confident_gnmax" else {}  # a-priori: answered or not, all pay
    accountant.step(mechanism=mechanism, num_queries=1, **parameters, **answered)
    one = accountant.rdp_data_independent  # (orders,)
    return [rdp_to_dp(accountant.orders, count * one, delta, conversion)[0] for count in counts]


def epsilon_figure(runs: list[dict[str, Any]]) -> Optional[plt.Figure]:
    """Epsilon (a priori, at each run's delta) against queries asked, a curve per run, its asked count marked."""
    runs = [run for run in runs if run.get("queries_asked") and run.get("parameters") is not None]
    if not runs:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 3.6), layout="constrained")
    for run in runs:
        privacy, asked = run["privacy"], run["queries_asked"]
        top = max(asked, int(asked * 1.5))
        counts = sorted({int(c) for c in np.linspace(1, top, CURVE_POINTS)})
        eps = epsilon_by_queries(run["mechanism"], run["parameters"], counts, privacy["delta"], privacy["conversion"])
        (line,) = ax.plot(counts, eps, label=run.get("mechanism_description", run["mechanism"]))
        asked_eps = privacy.get("epsilon_data_independent")
        if asked_eps is not None:
            ax.plot([asked], [asked_eps], "o", color=line.get_color())
            ax.annotate(f"{asked} asked: ε {asked_eps:.2f}", (asked, asked_eps), textcoords="offset points",
                        xytext=(-6, 6), ha="right", fontsize=7)
    delta, conversion = runs[-1]["privacy"]["delta"], runs[-1]["privacy"]["conversion"]
    ax.set_xlabel("queries asked")
    ax.set_ylabel(f"ε (data-independent, δ = {delta:g})")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title(f"PATE votes: ε against queries asked (RDP, {conversion} conversion)", fontsize=9)
    return fig


def student_figure(run: dict[str, Any]) -> Optional[plt.Figure]:
    """The student's test accuracy per class (bars) and overall (a line), from one run of the report."""
    student = run.get("student") or {}
    per_class = student.get("test_accuracy_per_class") or []
    if not per_class:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 3.2), layout="constrained")
    bars = ax.bar(range(len(per_class)), per_class, color="tab:blue")
    ax.bar_label(bars, labels=[f"{100 * v:.0f}" for v in per_class], fontsize=7, padding=1)
    overall = student.get("test_accuracy")
    if overall is not None:
        ax.axhline(overall, color="k", linestyle="--", linewidth=1, label=f"overall {100 * overall:.1f}%")
        ax.legend(fontsize=7, loc="lower right")
    ax.set_xticks(range(len(per_class)))
    ax.set_xlabel("class")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1.1)
    ax.set_title(f"student ({run.get('student_method', 'supervised')}): accuracy per class on "
                 f"{student.get('sizes', {}).get('test', '?')} held-out test images", fontsize=9)
    return fig


def save_pate_figures(runs: list[dict[str, Any]], path_of: Any, save: Any) -> list[Path]:
    """Both figures of the report's runs (student: the last run that trained one), saved as ``path_of(name)``."""
    figures = {"pate_epsilon": epsilon_figure(runs)}
    trained = [run for run in runs if (run.get("student") or {}).get("test_accuracy_per_class")]
    if trained:
        figures["student_per_class"] = student_figure(trained[-1])
    return [save(fig, path_of(name)) for name, fig in figures.items() if fig is not None]
