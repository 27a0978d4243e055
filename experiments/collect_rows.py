"""What did finished `pate` runs publish? Their publishable fields as one JSON + markdown table (docs/results/).

    python -m experiments.collect_rows --out docs/results/rows_250 NAME=RUN_DIR[:INDEX] ...

Reads only pate/report.json (publishable values), never diagnostics.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pate_lightning.io import write_json, write_text


def row(name: str, run_dir: Path, index: int) -> dict:
    run = json.loads((run_dir / "pate" / "report.json").read_text())["runs"][index]
    privacy, student = run["privacy"], run.get("student") or {}
    return {
        "row": name, "query_source": run["query_source"], "protocol": run.get("protocol"),
        "mechanism": run["mechanism_description"], "teachers": run["num_teachers"],
        "asked": run["queries_asked"], "answered": run["queries_answered"], "label_accuracy": run["label_accuracy"],
        "answered_label_counts": run["answered_label_counts"], "private": privacy["private"],
        "epsilon_data_independent": privacy["epsilon_data_independent"],
        "epsilon_data_dependent_released": privacy.get("epsilon_data_dependent_released"),
        "epsilon_labels": privacy["epsilon_labels"], "epsilon_end_to_end": privacy["epsilon_end_to_end"],
        "privacy_scope": privacy["privacy_scope"], "delta": privacy["delta"], "conversion": privacy["conversion"],
        "student_method": run.get("student_method"), "student_accuracy": student.get("test_accuracy"),
        "student_accuracy_per_class": student.get("test_accuracy_per_class"), "student_seconds": student.get("seconds"),
    }


def write_rows(out: Path, rows: list[dict], lines: list[str]) -> None:
    """``out``.json (the rows) and ``out``.md (the table), then the table on stdout."""
    write_json(out.with_suffix(".json"), {"rows": rows})
    write_text(out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


def fmt(value, pattern="{:.2f}") -> str:
    return "–" if value is None else pattern.format(value)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True, help="path without suffix: writes .json and .md")
    parser.add_argument("runs", nargs="+", help="NAME=RUN_DIR[:INDEX] (index into report.json's runs, default -1)")
    args = parser.parse_args()
    rows = []
    for spec in args.runs:
        name, _, where = spec.partition("=")
        folder, _, index = where.partition(":")
        rows.append(row(name, Path(folder), int(index or -1)))
    lines = ["| row | mechanism | asked | answered | label acc. | ε data-indep. | ε released | ε labels | ε end-to-end | scope | student | acc. |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['row']} | {r['mechanism']} | {r['asked']} | {r['answered']} | {fmt(r['label_accuracy'], '{:.1%}')} | "
            f"{fmt(r['epsilon_data_independent'])} | {fmt(r['epsilon_data_dependent_released'])} | {fmt(r['epsilon_labels'])} | "
            f"{fmt(r['epsilon_end_to_end'])} | `{r['privacy_scope']}` | {r['student_method']} | {fmt(r['student_accuracy'], '{:.1%}')} |")
    write_rows(Path(args.out), rows, lines)


if __name__ == "__main__":
    main()
