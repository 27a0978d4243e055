"""How do the generator families compare at 250 teachers? Their table from the files experiments/families_250.sh wrote.

Per row (a run dir under --run): candidates generated and kept (selection reports, combined metadata),
asked/answered and every epsilon with its delta, conversion and scope (pate/report.json, last run),
the student's test accuracy beside its public pretraining's own score, wall time per stage
(stage_seconds.tsv), and the agreement of the generator's labels with the evaluate stage's reference
classifier (UCStubModel on the first half of MNIST test, 3 epochs; cached in {run}/reference/) on the kept
samples. Rows already measured elsewhere (docs/results/rows_250.json) are copied in, marked as such.

    PYTHONPATH=. OMP_NUM_THREADS=1 python experiments/families_250_table.py --run runs/families250 --data_dir data
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
from pathlib import Path
from typing import Optional

import torch

from pate_lightning.evaluation.reference import load_or_train_reference, predict_labels
from pate_lightning.io import sha256_file, write_json, write_text
from pate_lightning.stacked.export import write_png_grid

PICTURED: dict[str, str] = {}  # sha256 of a combined_samples.pt -> its picture
ROWS = ("public_pate", "hybrid", "hybrid_pate", "public_filters", "per_teacher_conditional")
LABELS = {
    "public_pate": "public + PATE selection",
    "hybrid": "hybrid + teacher filters",
    "hybrid_pate": "hybrid + PATE selection",
    "public_filters": "public + teacher filters",
    "per_teacher_conditional": "per_teacher conditional + teacher filters",
}


def stage_seconds(path: Path) -> dict[str, float]:
    """``stage<TAB>seconds`` lines; a stage timed twice keeps its last line."""
    if not path.is_file():
        return {}
    return {stage: float(seconds) for stage, seconds in csv.reader(path.open(), delimiter="\t")}


def smallest_share(counts: list[int]) -> Optional[float]:
    """The smallest class's share of the answered queries.

    >>> smallest_share([1, 3])
    0.25
    >>> smallest_share([0, 0]) is None
    True
    """
    return None if sum(counts) == 0 else min(counts) / sum(counts)


def reference_agreement(run: Path, reference: torch.nn.Module) -> Optional[float]:
    """Share of kept samples whose generator label (labels.csv) the reference classifier predicts too."""
    samples = run / "synthetic/combined_samples.pt"
    if not samples.is_file():
        return None
    images = torch.load(samples, weights_only=True)  # (N, 1, 28, 28)
    if len(images) == 0:
        return None
    labels = torch.tensor([int(r["label"]) for r in csv.DictReader((run / "synthetic/combined_labels.csv").open())])
    return float((predict_labels(reference, images) == labels).double().mean())


def _rerun_label(name: str) -> str:
    """``hybrid_b`` -> ``hybrid + teacher filters, run b`` (a rerun of a row, families_250.sh *_again)."""
    base = max((row for row in LABELS if name.startswith(row + "_")), key=len)
    return f"{LABELS[base]}, run {name.removeprefix(base + '_')}"


def measured_row(name: str, run: Path, reference: torch.nn.Module, pictures: Path) -> dict:
    metadata = json.loads((run / "synthetic/combined_metadata.json").read_text())
    selections = [json.loads(p.read_text()) for p in sorted(run.glob("teachers/teacher_*/selection_report.json"))]
    row = {
        "row": name, "label": LABELS.get(name) or _rerun_label(name),
        "source": str(run), "teachers_generating": len(selections),
        "class_counts_asked": selections[0]["generation"]["class_counts"] if selections else None,
        "candidates": sum(s["pool_size"] for s in selections), "kept": metadata["num_samples"],
        "reference_agreement_kept": reference_agreement(run, reference),
        "privacy_stages": metadata["privacy"]["stages"], "seconds": stage_seconds(run / "stage_seconds.tsv"),
    }
    samples = run / "synthetic/combined_samples.pt"
    if row["kept"]:
        row["samples_sha256"] = sha256_file(samples)
        picture = PICTURED.get(row["samples_sha256"])  # reruns on the same samples share one picture
        if picture is None:
            images = torch.load(samples, weights_only=True)
            picture = PICTURED[row["samples_sha256"]] = str(pictures / f"families_{name}_n250.png")
            write_png_grid(Path(picture), images[torch.randperm(len(images), generator=torch.Generator().manual_seed(0))[:64]])
        row["picture"] = picture
    raw = run.parent / "per_teacher_picture/candidates/candidates_teacher_0.png"
    if not row["kept"] and name == "per_teacher_conditional" and raw.is_file():  # nothing kept: the raw candidates
        row["picture"] = str(shutil.copyfile(raw, pictures / f"families_{name}_n250_raw.png"))
    report = run / "pate/report.json"
    if not report.is_file():
        return {**row, "asked": 0, "answered": 0, "student": None}
    last = json.loads(report.read_text())["runs"][-1]
    privacy, student = last["privacy"], last["student"] or {}
    return {
        **row, "asked": last["queries_asked"], "answered": last["queries_answered"],
        "answered_label_counts": last["answered_label_counts"],
        "smallest_class_share": smallest_share(last["answered_label_counts"]),
        "mechanism": last["mechanism_description"],
        "epsilon_a_priori": privacy["epsilon_data_independent"],
        "epsilon_released": privacy["epsilon_data_dependent_released"],
        "epsilon_labels": privacy["epsilon_labels"], "epsilon_end_to_end": privacy["epsilon_end_to_end"],
        "privacy_scope": privacy["privacy_scope"], "delta": privacy["delta"], "conversion": privacy["conversion"],
        "student": {
            "method": last["student_method"], "architecture": student.get("architecture"),
            "settings": {k: student.get(k) for k in ("epochs", "lr", "batch_size", "val_fraction", "augment")},
            "test_accuracy": student.get("test_accuracy"),
            "pretraining_test_accuracy": (student.get("pretraining") or {}).get("test_accuracy"),
            "pretraining_seconds": (student.get("pretraining") or {}).get("seconds"),
            "pretraining_epochs": (student.get("pretraining") or {}).get("epochs"),
            "test_accuracy_per_class": student.get("test_accuracy_per_class"),
        },
        "pate_seconds_in_report": last["seconds"],
    }


def earlier_rows(path: Path) -> list[dict]:
    """The public + PATE-selection rows of rows_250.json (measured before this table; ucstub student, no pretraining)."""
    rows = []
    for r in json.loads(path.read_text())["rows"]:
        if r["query_source"] != "synthetic":
            continue
        rows.append({
            "row": "public_pate", "label": LABELS["public_pate"] + f" ({r['asked']} asked, earlier run)",
            "source": str(path), "asked": r["asked"], "answered": r["answered"],
            "answered_label_counts": r["answered_label_counts"], "smallest_class_share": smallest_share(r["answered_label_counts"]),
            "kept": 9924, "candidates": 10000, "reference_agreement_kept": None,
            "epsilon_a_priori": r["epsilon_data_independent"], "epsilon_released": r["epsilon_data_dependent_released"],
            "epsilon_labels": r["epsilon_labels"], "epsilon_end_to_end": r["epsilon_end_to_end"],
            "privacy_scope": r["privacy_scope"], "delta": r["delta"], "conversion": r["conversion"],
            "student": {"method": r["student_method"], "architecture": "small_cnn" if r["student_method"] == "fixmatch" else "ucstub",
                        "test_accuracy": r["student_accuracy"], "pretraining_test_accuracy": None},
            "seconds": {"pate student": r["student_seconds"]},
        })
    return rows


def _pct(value: Optional[float]) -> str:
    return "–" if value is None else f"{value:.1%}"


def _num(value: Optional[float]) -> str:
    return "unbounded" if value is None else f"{value:.2f}"


def _student(student: dict) -> str:
    """``supervised+pretrain:font_digits`` -> ``supervised, small_cnn, 10 ep, lr 0.001, aug, pretrain 2 ep``."""
    if not student:
        return "– (nothing kept)"
    parts = [student["method"].split("+")[0], student["architecture"]]
    settings = student.get("settings") or {}
    if settings:
        parts += [f"{settings['epochs']} ep", f"lr {settings['lr']:g}"] + (["aug"] if settings["augment"] else [])
    if student.get("pretraining_epochs"):
        parts.append(f"pretrain {student['pretraining_epochs']} ep")
    return ", ".join(parts)


def markdown(rows: list[dict], reference_accuracy: float) -> str:
    lines = [
        "| row | candidates / kept / asked / answered | smallest class (answered) | reference agrees (kept) | "
        "ε a priori | ε released | ε labels | ε end-to-end | scope | student | student (pretraining alone) | wall time per stage (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        s = r.get("student") or {}
        seconds = ", ".join(f"{k} {v:.0f}" for k, v in r.get("seconds", {}).items())
        lines.append(
            f"| {r['label']} | {r.get('candidates', 0):,} / {r['kept']:,} / {r['asked']:,} / {r['answered']:,} | "
            f"{_pct(r.get('smallest_class_share'))} | {_pct(r.get('reference_agreement_kept'))} | "
            f"{_num(r.get('epsilon_a_priori')) if r['asked'] else '–'} | {_num(r.get('epsilon_released')) if r['asked'] else '–'} | "
            f"{_num(r.get('epsilon_labels')) if r['asked'] else '–'} | {_num(r.get('epsilon_end_to_end')) if r['asked'] else '–'} | "
            f"{'`' + r['privacy_scope'] + '`' if r.get('privacy_scope') else '–'} | "
            f"{_student(s)} | {_pct(s.get('test_accuracy'))} ({_pct(s.get('pretraining_test_accuracy'))}) | {seconds} |"
        )
    return "\n".join(lines) + (
        f"\n\nδ = 1e-5 and the Balle et al. 2020 conversion in every row. Reference classifier: held-out accuracy "
        f"{reference_accuracy:.1%} (first half of MNIST test, 3 epochs). 'unbounded': a stage before the votes read "
        "private data without DP (scope `labels_only_queries_not_private`); the label ε then covers the labels only.\n"
        "Candidates asked per class 0-9 of each teacher's decoder: "
        + "; ".join(f"{r['label']}: {r['class_counts_asked']}" for r in rows if r.get("class_counts_asked")) + ".\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", default="runs/families250")
    parser.add_argument("--data_dir", default="data")
    parser.add_argument("--rows", nargs="+", default=list(ROWS[1:]))
    parser.add_argument("--earlier", default="docs/results/rows_250.json")
    parser.add_argument("--public_run", default="runs/full250", help="the earlier rows' run (its combined queries)")
    parser.add_argument("--out", default="docs/results/families_table_250")
    args = parser.parse_args()
    run = Path(args.run)
    reference, reference_report = load_or_train_reference(run, args.data_dir)
    rows = earlier_rows(Path(args.earlier))
    public = Path(args.public_run) / "synthetic/combined_samples.pt"  # the earlier rows' queries
    if public.is_file():
        images = torch.load(public, weights_only=True)
        picture = Path(args.out).parent / "families_public_pate_n250.png"
        write_png_grid(picture, images[torch.randperm(len(images), generator=torch.Generator().manual_seed(0))[:64]])
        for row in rows:
            row["picture"] = str(picture)
    rows += [measured_row(name, run / name, reference, Path(args.out).parent) for name in args.rows if (run / name).is_dir()]
    write_json(Path(args.out + ".json"), {
        "teachers": 250, "confident_gnmax": {"threshold": 200, "sigma1": 150, "sigma2": 40}, "protocol": "half",
        "reference_classifier": reference_report, "rows": rows, "machine": "2 shared CPU cores, OMP_NUM_THREADS=1",
        "commands": ["bash experiments/families_250.sh " + " ".join(args.rows),
                     f"python experiments/families_250_table.py --run {args.run} --rows {' '.join(args.rows)}"],
    })
    write_text(Path(args.out + ".md"), markdown(rows, reference_report["heldout_accuracy"]))


if __name__ == "__main__":
    main()
