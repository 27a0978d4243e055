"""``pate/report.json`` and ``private/pate_diagnostics.json`` (one entry per setting) and the table printed from them."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any, Optional

from pate_lightning.io import keep_aside, write_json
from pate_lightning.pate.publish import DIAGNOSTIC_NOTE, RUN_KEY, check_publishable
from pate_lightning.privacy import NOT_PRIVATE, NOT_RELEASED, RELEASED

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
    "Publishable values only; values computed from the un-noised votes are kept apart, not for release. "
    "epsilon_data_independent: Renyi-DP of the noisy votes fixed before the run (every asked query charged in "
    "full), converted to (epsilon, delta) by the named conversion. epsilon_labels adds the cost of releasing the "
    "data-dependent epsilon; epsilon_end_to_end composes every stage that read private data (null where one is "
    "not DP) and privacy_scope says what the epsilons cover. GNMax and Confident-GNMax: " + RELEASED
    + " LNMax: " + NOT_RELEASED + " The papers' anchors are data-dependent epsilons (the 2018 one includes its "
    "smooth-sensitivity cost)."
)


# a run replaces an earlier one only when it repeats the same setting, so sweeps over parameters or
# query counts accumulate side by side in one report


def _same_run(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return all(a.get(key) == b.get(key) for key in RUN_KEY)


def _earlier_runs(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    try:
        earlier = json.loads(path.read_text(encoding="utf-8"))
        return [r for r in earlier.get("runs", []) if isinstance(r, dict)]
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as error:
        # start afresh rather than fail, but keep the damaged file: its earlier entries are not derived again
        keep_aside(path, f"is damaged ({type(error).__name__})")
        return []


def _publishable(run: dict[str, Any]) -> bool:
    try:
        check_publishable(run)
        return True
    except ValueError:
        return False


def merge_reports(
    report_path: Path, diagnostics_path: Path, run: dict[str, Any], diagnostics: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Both files with ``run`` added, replacing an earlier run of the same setting (``RUN_KEY``).

    Earlier report entries that fail the allow-list (runs from before the report/diagnostics split, which
    held un-noised values) move to the diagnostics whole, marked ``legacy``.
    """
    check_publishable(run)
    earlier = [r for r in _earlier_runs(report_path) if not _same_run(r, run)]
    legacy = [{**r, "legacy": True, "not_for_release": True} for r in earlier if not _publishable(r)]
    runs = [r for r in earlier if _publishable(r)] + [run]
    kept = [r for r in _earlier_runs(diagnostics_path) if not _same_run(r, run)]
    report = {"note": REPORT_NOTE, "anchors": ANCHORS, "runs": runs}
    return report, {"note": DIAGNOSTIC_NOTE, "not_for_release": True, "runs": kept + legacy + [diagnostics]}


def write_report(
    report_path: Path, diagnostics_path: Path, run: dict[str, Any], diagnostics: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Write the diagnostics, then the report (each atomically); return both."""
    report, kept = merge_reports(report_path, diagnostics_path, run, diagnostics)
    write_json(diagnostics_path, kept)
    write_json(report_path, report)
    return report, kept


def _number(value: Optional[float], digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _percent(value: Optional[float]) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


DIAGNOSTIC = "[diag]"  # marks columns read from diagnostics.json: computed from un-noised votes, not for release
COLUMNS = ("query source", "mechanism", "teachers", "asked", "answered", "label acc", "eps data-indep.",
           "eps answered-only+", "eps released", "eps labels", "eps end-to-end", "scope", "noise", "student", "student acc",
           f"{DIAGNOSTIC} eps data-dep.", f"{DIAGNOSTIC} plurality acc", f"{DIAGNOSTIC} agreement")


def _end_to_end(privacy: dict[str, Any]) -> str:
    if "privacy_scope" not in privacy:
        return "-"
    return "unbounded" if privacy.get("epsilon_end_to_end") is None else _number(privacy["epsilon_end_to_end"], 2)


def _noise(privacy: dict[str, Any]) -> str:
    if "private" not in privacy:
        return "unknown"
    return "OS entropy" if privacy["private"] else NOT_PRIVATE


def table_rows(report: dict[str, Any], diagnostics: Optional[dict[str, Any]] = None) -> list[tuple[str, ...]]:
    rows = []
    diagnostic_runs = [d for d in (diagnostics or {}).get("runs", []) if not d.get("legacy")]
    for run in report["runs"]:
        privacy, student = run["privacy"], run.get("student") or {}
        diag = next((d for d in reversed(diagnostic_runs) if _same_run(d, run)), {})
        rows.append((
            run["query_source"], run["mechanism_description"], str(run["num_teachers"]), str(run["queries_asked"]),
            str(run["queries_answered"]), _percent(run.get("label_accuracy")),
            _number(privacy.get("epsilon_data_independent"), 2),
            _number(privacy.get("epsilon_data_independent_answered_only"), 2),
            _number(privacy.get("epsilon_data_dependent_released"), 2), _number(privacy.get("epsilon_labels"), 2),
            _end_to_end(privacy), privacy.get("privacy_scope", "-"), _noise(privacy),
            run.get("student_method") or "supervised", _percent(student.get("test_accuracy")), _number(diag.get("epsilon_data_dependent"), 2),
            _percent(diag.get("plurality_accuracy")), _percent(diag.get("generator_label_agreement")),
        ))
    for anchor in report["anchors"]:
        answered = anchor["queries_answered"]
        rows.append((
            f"[{anchor['name']}]", anchor["mechanism"], "-" if answered is None else "250", "-",
            "-" if answered is None else str(answered), "-", "-", "-", _number(anchor["epsilon"], 2), "-", "-",
            "-" if answered is None else "labels", "-", "-", _percent(anchor["student_accuracy"]), "-", "-", "-",
        ))
    return rows


WIDTH = 120  # the default table's longest line; `wide` prints one row per run with every column


def run_lines(row: tuple[str, ...]) -> list[str]:
    """One row of ``table_rows`` as ``column value`` pairs packed into lines of at most ``WIDTH`` ("-" left out)."""
    cells = dict(zip(COLUMNS, row))
    line, lines = f"{cells['query source']}  {cells['mechanism']}", []
    for name, value in cells.items():
        if name in ("query source", "mechanism") or value == "-":
            continue
        pair = f"{name} {value}"
        if len(line) + 2 + len(pair) > WIDTH:
            lines.append(line)
            line = "    " + pair
        else:
            line += "  " + pair
    return [*lines, line]


def release_line(run: dict[str, Any]) -> str:
    """How one run's data-dependent epsilon was (or was not) released."""
    release = run["privacy"].get("release")
    if not release:
        why = ("no smooth sensitivity for LNMax" if run.get("mechanism") == "lnmax"
               else run["privacy"]["release_refused"] if run["privacy"].get("release_refused")
               else "this run predates the fixed-parameter release; rerun it (votes are cached)")
        return f"  {run['mechanism_description']}: data-dependent epsilon not privately released ({why})"
    return (f"  {run['mechanism_description']}: released by smooth sensitivity (Theorem 23) at fixed order "
            f"{release['order']:g}, beta {release['beta']:.4g}, sigma_ss {release['sigma_ss']:.4g}; the release "
            f"costs RDP {release['rdp_release']:.4g} at that order, composed into eps labels")


def format_table(report: dict[str, Any], diagnostics: Optional[dict[str, Any]] = None, wide: bool = False) -> str:
    """The runs, then the published anchors in brackets, then what the columns mean.

    The ``[diag]`` columns (from the un-noised votes) are shown only when ``diagnostics`` is given. Within ``WIDTH``
    columns: each run as ``column value`` lines; ``wide``: one row per run, a column each.
    """
    shown = len(COLUMNS) if diagnostics is not None else sum(not c.startswith(DIAGNOSTIC) for c in COLUMNS)
    rows = [row[:shown] for row in (COLUMNS, *table_rows(report, diagnostics))]
    if wide:
        widths = [max(len(row[i]) for row in rows) for i in range(shown)]
        lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
        lines.insert(1, "  ".join("-" * width for width in widths))
    else:
        lines = [line for row in rows[1:] for line in run_lines(row)]
    last = report["runs"][-1]["privacy"] if report["runs"] else {}
    legend = [
        f"epsilon at delta {last.get('delta', 1e-5):g}, conversion {last.get('conversion', '-')} "
        f"({last.get('conversion_reference', '-')}); label acc: answered labels vs. the public truth (mnist_test).",
        "eps data-indep.: the noisy votes' RDP fixed before the run (every asked query charged). + answered-only: "
        "GNMax charged on answered queries only (needs a privacy-filter argument not made here; not a headline). "
        "eps released: one noisy draw of the data-dependent epsilon (the private figure); eps labels: votes + the "
        "release's cost; eps end-to-end: every stage that read private data (unbounded if one is not DP). "
        "The anchors' epsilons are the papers' data-dependent ones.",
        f"{DIAGNOSTIC} columns come from private/pate_diagnostics.json: computed from the un-noised votes, NOT FOR RELEASE."
        if diagnostics is not None else
        "Values from the un-noised votes are in private/pate_diagnostics.json (not for release; --diagnostics true prints them).",
        *(release_line(run) for run in report["runs"]),
        *(f"  {run['mechanism_description']}: {NOT_PRIVATE} ({run['privacy']['noise_seed_note']})"
          for run in report["runs"] if run["privacy"].get("private") is False),
    ]
    if not wide:
        legend = [part for text in legend for part in textwrap.wrap(
            text, WIDTH, subsequent_indent="    ", break_long_words=False, break_on_hyphens=False)]
    return "\n".join([*lines, *legend])
