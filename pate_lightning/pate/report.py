"""``pate/report.json`` (one entry per query source and mechanism) and the table printed from it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from pate_lightning.io import write_json
from pate_lightning.privacy import NOT_RELEASED, RELEASED

# Published MNIST results to compare against (delta 1e-5; both epsilons are data-dependent).
ANCHORS = [
    {"name": "PATE-G 2017", "paper": "Papernot et al., arXiv:1610.05755", "mechanism": "lnmax(gamma=0.05)", "queries_answered": 100,
     "epsilon": 2.04, "student_accuracy": 0.980},
    {"name": "Confident-GNMax 2018", "paper": "Papernot et al., arXiv:1802.08908", "mechanism": "confident_gnmax(T=200, sigma1=150, sigma2=40)",
     "queries_answered": 286, "epsilon": 1.97, "student_accuracy": 0.985},
    {"name": "non-private", "paper": "Papernot et al., arXiv:1610.05755", "mechanism": "-", "queries_answered": None, "epsilon": None,
     "student_accuracy": 0.992},
]
REPORT_NOTE = (
    "Epsilons come from Renyi-DP accounting of the queries asked (this replaces saferlearn's basic-composition "
    "estimate). GNMax and Confident-GNMax: " + RELEASED + " LNMax: " + NOT_RELEASED
    + " The papers' anchors are data-dependent epsilons too (the 2018 one includes its smooth-sensitivity cost)."
)


# a run replaces an earlier one only when it repeats the same setting, so sweeps over parameters or
# query counts accumulate side by side in one report
RUN_KEY = ("query_source", "mechanism_description", "queries_asked", "num_teachers", "protocol", "student_method")


def _same_run(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return all(a.get(key) == b.get(key) for key in RUN_KEY)


def merge_report(path: Path, run: dict[str, Any]) -> dict[str, Any]:
    """The report at ``path`` with ``run`` added, replacing an earlier run of the same setting (``RUN_KEY``)."""
    runs: list[dict[str, Any]] = []
    if path.is_file():
        try:
            earlier = json.loads(path.read_text(encoding="utf-8"))
            runs = [r for r in earlier.get("runs", []) if isinstance(r, dict)]
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            runs = []  # a report is derived data: start afresh rather than fail
    runs = [r for r in runs if not _same_run(r, run)] + [run]
    return {"note": REPORT_NOTE, "anchors": ANCHORS, "runs": runs}


def write_report(path: Path, run: dict[str, Any]) -> dict[str, Any]:
    report = merge_report(path, run)
    write_json(path, report)
    return report


def _number(value: Optional[float], digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _percent(value: Optional[float]) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


COLUMNS = ("query source", "mechanism", "teachers", "asked", "answered", "label acc", "agreement",
           "eps (data-indep.)", "eps (data-dep.*)", "eps (+release)", "eps (released)", "student acc")


def table_rows(report: dict[str, Any]) -> list[tuple[str, ...]]:
    rows = []
    for run in report["runs"]:
        privacy, student = run["privacy"], run.get("student") or {}
        rows.append((
            run["query_source"], run["mechanism_description"], str(run["num_teachers"]), str(run["queries_asked"]),
            str(run["queries_answered"]), _percent(run.get("label_accuracy")),
            _percent(run.get("generator_label_agreement")), _number(privacy["epsilon_data_independent"], 2),
            _number(privacy["epsilon_data_dependent"], 2), _number(privacy.get("epsilon_data_dependent_with_release"), 2),
            _number(privacy.get("epsilon_data_dependent_released"), 2), _percent(student.get("test_accuracy")),
        ))
    for anchor in report["anchors"]:
        answered = anchor["queries_answered"]
        rows.append((
            f"[{anchor['name']}]", anchor["mechanism"], "-" if answered is None else "250", "-", "-" if answered is None else str(answered), "-", "-",
            "-", _number(anchor["epsilon"], 2), "-", "-", _percent(anchor["student_accuracy"]),
        ))
    return rows


def release_line(run: dict[str, Any]) -> str:
    """How one run's data-dependent epsilon was (or was not) released."""
    release = run["privacy"].get("smooth_sensitivity")
    if not release:
        why = ("no smooth sensitivity for LNMax" if run.get("mechanism") == "lnmax"
               else "this run predates the release; rerun it (votes are cached) to release it")
        return f"  {run['mechanism_description']}: data-dependent epsilon not privately released ({why})"
    sigma_ss = "-" if release["sigma_ss"] is None else f"{release['sigma_ss']:.3g}"
    return (f"  {run['mechanism_description']}: released via smooth sensitivity at order {release['order']:g}, "
            f"beta {release['beta']:.4g}, SS {release['smooth_sensitivity']:.3g}, sigma_ss {sigma_ss}, "
            f"noise std {release['noise_std']:.3g} (seed {release['seed']})")


def format_table(report: dict[str, Any]) -> str:
    """The runs, then the published anchors in brackets, then what the starred columns mean."""
    rows = [COLUMNS, *table_rows(report)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    delta = report["runs"][-1]["privacy"]["delta"] if report["runs"] else 1e-5
    lines += [
        f"epsilon at delta {delta:g}; label acc: answered labels vs. the truth (mnist_test); agreement: answered "
        "labels vs. the generating teacher's own label (synthetic).",
        "* data-dependent epsilon; +release: with the cost of releasing it by smooth sensitivity (Papernot et al. "
        "2018, Sec. 4.2); released: one noisy draw of that, the private figure (GNMax and Confident-GNMax only; "
        "LNMax's data-dependent epsilon is not released). The anchors' epsilons are data-dependent.",
        *(release_line(run) for run in report["runs"]),
    ]
    return "\n".join(lines)
