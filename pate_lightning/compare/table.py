"""``results.md``: one markdown row per route from ``results.json``'s rows."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any, Optional, Sequence

from pate_lightning.privacy import NOT_PRIVATE

COLUMNS = ("route", "asked → answered", "ε a priori", "ε released", "scope", "composed ε (K)",
           "student mean ± spread", "public-only", "wall time per stage", "device")


def _eps(value: Optional[float]) -> str:
    return "unbounded" if value is None else f"{value:.2f}"


def _pct(value: Optional[float]) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def row_cells(row: dict[str, Any]) -> tuple[str, ...]:
    answered = ", ".join(str(a) for a in row["queries_answered"] if a is not None)
    asked = "–" if row["queries_asked"] is None else f"{row['queries_asked']:,} → {answered}"
    released = ", ".join(f"{e:.2f}" for e in row["epsilon_released"] if e is not None) or "–"
    spread = ("–" if row["student_accuracy_mean"] is None
              else f"{100 * row['student_accuracy_mean']:.1f}% ± {100 * row['student_accuracy_std']:.1f}")
    composed = f"{_eps(row['composed_epsilon'])} ({row['replicates']}, {row['composed_epsilon_covers']})"
    stages = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in row["seconds_per_stage"].items())
    return (row["name"] + ("" if row["private"] else f" ({NOT_PRIVATE})"), asked, _eps(row["epsilon_a_priori"]),
            released, f"`{row['scope']}`", composed, spread, _pct(row["public_only_accuracy"]), stages, row["device"])


def labels_bought(row: dict[str, Any]) -> Optional[str]:
    """One sentence: what the private labels added to the route's public-only student, at which epsilon and scope.

    >>> labels_bought({"name": "demo", "student_accuracy_mean": 0.912, "public_only_accuracy": 0.871,
    ...     "composed_epsilon": 4.09, "composed_epsilon_covers": "end_to_end", "delta": 1e-5, "replicates": 1})
    'demo: the private labels took the student from 87.1% (public data only) to 91.2% (+4.1 points) at ε 4.09 (δ = 1e-05, end_to_end, 1 replicate(s)).'
    """
    student, public = row["student_accuracy_mean"], row["public_only_accuracy"]
    if student is None or public is None:
        return None
    return (f"{row['name']}: the private labels took the student from {_pct(public)} (public data only) to "
            f"{_pct(student)} ({100 * (student - public):+.1f} points) at ε {_eps(row['composed_epsilon'])} "
            f"(δ = {row['delta']:g}, {row['composed_epsilon_covers']}, {row['replicates']} replicate(s)).")


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """The routes' table, then what its epsilons mean."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row_cells(row)) + " |" for row in rows]
    delta = rows[0]["delta"] if rows else 1e-5
    conversion = rows[0]["conversion"] if rows else "balle2020"
    lines += ["", f"ε at δ = {delta:g}, {conversion} conversion. ε a priori: fixed before the run (PATE: the votes "
              "and the release's cost; DP-SGD: opacus's accountant). ε released: the one noisy draw of the "
              "data-dependent ε per replicate. composed ε: all K replicate releases together by the package's ledger "
              "(generators charged once); `labels` where the images are not covered. Student: mean ± standard "
              "deviation over the replicates; public-only: the same student after public pretraining alone."]
    return "\n".join(lines) + "\n"


DOCS_COLUMNS = ("route", "command", "asked → answered", "ε a priori", "ε released", "scope", "composed ε (K)",
                  "student mean ± spread", "public-only", "figures from")


def docs_table(results: dict[str, Any]) -> str:
    """docs/results.md's table from a ``results.json`` whose routes also carry ``description``, ``command`` and,
    where the figures are not compare's own, ``source`` with ``rerun_by_compare: false``; then the routes not yet
    measured (``not_yet_measured``: name and command)."""
    lines = ["| " + " | ".join(DOCS_COLUMNS) + " |", "|" + "---|" * len(DOCS_COLUMNS)]
    for row in results["routes"]:
        cells = row_cells(row)
        figures = ("`pate-lightning compare`" if row.get("rerun_by_compare", True)
                   else f"[{PurePosixPath(row['source']).name}]({PurePosixPath(row['source']).relative_to('docs')}), "
                   "not rerun by compare")  # the table lives in docs/: links relative to it
        lines.append("| " + " | ".join((row["description"], f"`{row['command']}`", *cells[1:8], figures)) + " |")
    for route in results.get("not_yet_measured", []):
        cells = (route["description"], f"`{route['command']}`", *["–"] * 7, "not yet measured")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
