"""What did the pretraining student variants score? Runs of experiments/student_rows_pretrain.sh as JSON + markdown.

    python -m experiments.collect_pretrain_rows --run /work/runs/student4 --out docs/results/student_rows_pretrain

One run dir per variant (``{run}/{variant}/pate/report.json``, one run each) and the GNU time lines of
``{run}/times.txt``. Reads only the publishable report.json, never diagnostics.json. Every run is listed
(repeats included); the markdown adds the mean of each setting's repeats.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path
from statistics import mean

from experiments.collect_rows import fmt, row
from pate_lightning.io import write_json, write_text

ROWS = {"a": "(a) LNMax, 100 answered", "b": "(b) Confident-GNMax T=200 s1=150 s2=40, 500 asked"}
TIME_LINE = re.compile(r"^(\S+) wall ([\d.]+) s user ([\d.]+) s sys ([\d.]+) s$")


def times(path: Path) -> dict[str, dict[str, float]]:
    """variant -> wall and CPU seconds of its last run (GNU time, the whole command)."""
    found = {}
    for line in path.read_text().splitlines() if path.is_file() else []:
        if match := TIME_LINE.match(line.strip()):
            name, wall, user, system = match.groups()
            found[name] = {"wall_s": float(wall), "cpu_s": round(float(user) + float(system), 1)}
    return found


def setting(student: dict) -> str:
    """The student's levers in one short label, e.g. ``fixmatch+pretrain:font_digits 2+40 ep, lr 0.003``."""
    pretrain = student.get("pretraining")
    label = f"{student['method']}" + (f"+pretrain:{pretrain['set']} {pretrain['epochs']}+" if pretrain else " ")
    label += f"{student['epochs']} ep, lr {student['lr']:g}"
    return label + (f", elastic {student['elastic']:g}" if student.get("elastic") else "")


def collect(run_root: Path) -> list[dict]:
    measured = times(run_root / "times.txt")
    rows = []
    for folder in sorted(p.parent.parent for p in run_root.glob("*/pate/report.json")):
        variant = folder.name
        entry = json.loads((folder / "pate" / "report.json").read_text())["runs"][-1]
        student = entry["student"]
        entry = {**entry, "teacher_ids": f"{len(entry['teacher_ids'])} teachers"}  # 0..249, not worth 250 lines
        rows.append({
            **row(ROWS[variant[0]], folder, -1), "variant": variant, "setting": setting(student),
            "pretraining": student.get("pretraining"), "student_steps": student["steps"],
            "run_seconds": entry["seconds"], **measured.get(variant, {}), "report_entry": entry,
        })
    return rows


def table(rows: list[dict]) -> list[str]:
    scopes = sorted({f"δ {r['delta']:g}, conversion {r['conversion']}, scope `{r['privacy_scope']}`" for r in rows})
    lines = [f"Every ε: {'; '.join(scopes)}. ε released: one noisy draw of the data-dependent ε with its release cost "
             "(Confident-GNMax only). Wall and CPU seconds: the whole command on the shared 2-core CPU.", "",
             "| row | variant | student | asked | answered | label acc. | ε data-indep. | ε released | ε labels | public-only acc. | student acc. | run wall s | CPU s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["variant"][0], r["setting"], r["variant"])):
        public = (r["pretraining"] or {}).get("test_accuracy")
        lines.append(
            f"| {r['row'][:3]} | `{r['variant']}` | {r['setting']} | {r['asked']} | {r['answered']} | "
            f"{fmt(r['label_accuracy'], '{:.1%}')} | {fmt(r['epsilon_data_independent'])} | "
            f"{fmt(r['epsilon_data_dependent_released'])} | {fmt(r['epsilon_labels'])} | {fmt(public, '{:.1%}')} | "
            f"**{fmt(r['student_accuracy'], '{:.1%}')}** | {fmt(r.get('wall_s'), '{:.0f}')} | {fmt(r.get('cpu_s'), '{:.0f}')} |")
    groups = defaultdict(list)
    for r in rows:
        groups[(r["row"][:3], r["setting"])].append(r["student_accuracy"])
    lines += ["", "| row | student | runs | mean student acc. |", "|---|---|---|---|"]
    lines += [f"| {key[0]} | {key[1]} | {len(v)} | {mean(v):.1%} |" for key, v in sorted(groups.items())]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", required=True, help="the RUN folder of experiments/student_rows_pretrain.sh")
    parser.add_argument("--out", required=True, help="path without suffix: writes .json and .md")
    args = parser.parse_args()
    rows = collect(Path(args.run))
    out = Path(args.out)
    write_json(out.with_suffix(".json"), {"delta": 1e-5, "rows": rows})
    write_text(out.with_suffix(".md"), "\n".join(table(rows)) + "\n")
    print("\n".join(table(rows)))


if __name__ == "__main__":
    main()
