"""What do the DP generator rows cost and score? Generator, PATE and end-to-end epsilon, student, wall times.

    python -m experiments.dp_rows_collect --out docs/results/dp_rows_250 --reference_dir RUN/refrun \\
        "NAME=RUN_DIR[:LOG,LOG...][@INDEX]" ...

Per row it reads the publishable ``pate/report.json`` (never diagnostics.json), the pool's combined metadata
(its privacy stages: the generator's RDP curve, converted alone at the report's delta), the ``[timing]`` lines
of the row's log (experiments/dp_rows_250.sh), and scores the pool with the public proxy of
``experiments/pool_quality.py``.
"""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path
from typing import Any, Optional

from experiments.collect_rows import fmt, row, write_rows
from experiments.pool_quality import pool_scores
from pate_lightning.evaluation.reference import load_or_train_reference
from pate_lightning.io import load_torch, read_json
from pate_lightning.pate.publish import metadata_path
from pate_lightning.pate.queries import labels_path, read_generator_labels
from pate_lightning.privacy import analysis
from pate_lightning.privacy.ledger import entry_from_contract

STAGES = (("fit", " fit "), ("generate", " predict "), ("combine", " combine "),
          ("latent_stats", "latent_stats_route"), ("pate", " pate "))


def generator_epsilon(stages: list[dict], delta: float, conversion: str) -> tuple[Optional[str], Optional[float]]:
    """The generator stage's name and its epsilon alone at ``delta`` (0 when it reads no private data)."""
    for record in stages:
        if record["stage"] == "generator":
            entry = entry_from_contract(record)
            if entry.rdp is None:
                return entry.name, (0.0 if not entry.reads_private_data else math.inf)
            return entry.name, analysis.rdp_to_dp(analysis.DEFAULT_ORDERS, entry.rdp, delta, conversion)[0]
    return None, None


def timings(logs: list[Path]) -> dict[str, int]:
    """Seconds per stage from the logs' ``[timing] COMMAND : N s`` lines (the outer ``fit`` group excluded)."""
    found: dict[str, int] = {}
    lines = [line for log in logs if log.is_file() for line in log.read_text(errors="replace").splitlines()]
    for line in lines:
        match = re.match(r"\[timing\] (.*) : (\d+) s$", line)
        if not match or match.group(1).startswith("fit "):
            continue
        command = f" {match.group(1)} "
        for stage, key in STAGES:
            if key in command:
                found[stage] = found.get(stage, 0) + int(match.group(2))
    return found


def dp_row(name: str, run_dir: Path, logs: list[Path], reference, index: int = -1) -> dict[str, Any]:
    base = row(name, run_dir, index)
    run = read_json(run_dir / "pate" / "report.json")["runs"][index]
    student = run.get("student") or {}
    pool = Path(run["query_file"])
    stages = read_json(metadata_path(pool))["privacy"]["stages"]
    generator, gen_eps = generator_epsilon(stages, base["delta"], base["conversion"])
    images = load_torch(pool, "synthetic samples")
    quality = pool_scores(reference, images.float(), read_generator_labels(labels_path(pool), len(images)))
    return {**base, "generator": generator, "epsilon_generator": gen_eps, "pool": str(pool),
            "pool_quality": quality, "ledger": run["privacy"]["ledger"],
            "pretraining": student.get("pretraining"), "votes_seconds": (run.get("votes") or {}).get("seconds"),
            "pate_seconds": run.get("seconds"), "stage_seconds": timings(logs)}


def table(rows: list[dict]) -> list[str]:
    lines = ["| row | generator | ε gen. | pool agree / confident | asked | answered | ε PATE a-priori (+release) | "
             "ε PATE released | ε end-to-end | scope | public-only student | student | wall time (s) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        pre = (r["pretraining"] or {}).get("test_accuracy")
        times = ", ".join(f"{k} {v}" for k, v in r["stage_seconds"].items())
        lines.append(
            f"| {r['row']} | {r['generator']} | {fmt(r['epsilon_generator'])} | "
            f"{fmt(r['pool_quality']['agree'], '{:.0%}')} / {fmt(r['pool_quality']['confident'], '{:.0%}')} | "
            f"{r['asked']} | {r['answered']} | {fmt(r['epsilon_labels'])} | {fmt(r['epsilon_data_dependent_released'])} | "
            f"{fmt(r['epsilon_end_to_end'])} | `{r['privacy_scope']}` | {fmt(pre, '{:.1%}')} | "
            f"{fmt(r['student_accuracy'], '{:.1%}')} | {times} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="path without suffix: writes .json and .md")
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--reference_dir", required=True)
    parser.add_argument("runs", nargs="+", help="NAME=RUN_DIR[:LOG,...][@INDEX] (INDEX into report.json's runs, default -1)")
    args = parser.parse_args()
    reference, _ = load_or_train_reference(args.reference_dir, args.data_dir)
    rows = []
    for spec in args.runs:
        name, _, where = spec.partition("=")
        where, _, index = where.partition("@")
        folder, _, log = where.partition(":")
        logs = [Path(path) for path in log.split(",") if path]
        rows.append(dp_row(name, Path(folder), logs, reference, int(index or -1)))
    write_rows(Path(args.out), rows, table(rows))


if __name__ == "__main__":
    main()
