"""How do the generator families compare at small scale? Each family and selection mode through the existing stages.

Shared: the shard partition, teacher classifiers and the public VAE (font_digits only). Per row: fit the
family's VAEs, generate (teacher filters or PATE selection), combine, then `pate` on the synthetic queries
(Confident-GNMax, student scored on the held-out MNIST test half). Writes docs/results/families_table.json,
a markdown table and one picture of combined samples per row.

    PYTHONPATH=. OMP_NUM_THREADS=1 python experiments/families_table.py --teachers 10 --data_dir data
The full table uses --teachers 250 with the pate settings of configs/pate.yaml.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch

from pate_lightning.stacked.export import write_png_grid
from pate_lightning.pipeline.cli import cli_main
from pate_lightning.candidates.combine import combine_command
from pate_lightning.io import write_json, write_text
from pate_lightning.pate.command import pate_command

REPO = Path(__file__).resolve().parents[1]
CPU = ["--trainer.accelerator=cpu", "--trainer.enable_progress_bar=false"]
# name -> (VAE config, extra fit args, selection config)
ROWS = {
    "per_teacher": ("teacher_vae.yaml", [], "generate.yaml"),
    "per_teacher_conditional": ("generators/per_teacher_conditional.yaml", [], "generate.yaml"),
    "public_filters": ("generators/public.yaml", [], "generate.yaml"),
    "public_pate": ("generators/public.yaml", [], "generators/generate_pate.yaml"),
    "hybrid": ("generators/hybrid.yaml", [], "generate.yaml"),
}


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return round(time.perf_counter() - started, 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--teachers", type=int, default=10)
    parser.add_argument("--data_dir", default="data")
    parser.add_argument("--out_dir", default="runs/families")
    parser.add_argument("--rows", nargs="+", default=list(ROWS))
    parser.add_argument("--classifier_epochs", type=int, default=20)
    parser.add_argument("--vae_epochs", type=int, default=30, help="per_teacher rows (the guide: 100)")
    parser.add_argument("--hybrid_epochs", type=int, default=10)
    parser.add_argument("--prior_epochs", type=int, default=10)
    parser.add_argument("--pool_size", type=int, default=2000, help="candidates per teacher, teacher filters")
    parser.add_argument("--pate_pool_size", type=int, default=300, help="candidates per teacher, PATE selection")
    parser.add_argument("--threshold", type=float, default=None, help="Confident-GNMax T (default 0.8 x teachers)")
    parser.add_argument("--sigma1", type=float, default=None, help="default 0.6 x teachers (250: 150)")
    parser.add_argument("--sigma2", type=float, default=None, help="default 0.16 x teachers (250: 40)")
    parser.add_argument("--student_epochs", type=int, default=10)
    args = parser.parse_args()
    n = args.teachers
    threshold = args.threshold if args.threshold is not None else 0.8 * n
    sigma1 = args.sigma1 if args.sigma1 is not None else 0.6 * n
    sigma2 = args.sigma2 if args.sigma2 is not None else 0.16 * n
    base = Path(args.out_dir).resolve()
    data = [f"--data.data_dir={args.data_dir}"]
    teachers = f"--data.teacher_ids={list(range(n))}".replace(" ", "")
    shared = base / "shared"
    times = {}
    times["classifiers"] = timed(lambda: cli_main([
        "fit", "--config", str(REPO / "configs/teacher_classifier.yaml"), *CPU, *data, f"--data.run_dir={shared}",
        teachers, f"--trainer.max_epochs={args.classifier_epochs}"]))
    public_vae = shared / "public_vae" / "teacher_vaes/teacher_0/vae_full.pth"
    times["public_prior"] = timed(lambda: cli_main([
        "fit", "--config", str(REPO / "configs/generators/public_prior.yaml"), *CPU, *data,
        f"--data.run_dir={shared / 'public_vae'}", f"--trainer.max_epochs={args.prior_epochs}"]))
    rows = []
    for name in args.rows:
        vae_config, extra, selection = ROWS[name]
        run = base / name
        run.mkdir(parents=True, exist_ok=True)
        shutil.copy(shared / "shard_indices.json", run / "shard_indices.json")
        epochs = args.hybrid_epochs if name == "hybrid" else 1 if name.startswith("public") else args.vae_epochs
        fit_args = ["fit", "--config", str(REPO / "configs" / vae_config), *CPU, *data, f"--data.run_dir={run}",
                    teachers, f"--trainer.max_epochs={epochs}", *extra]
        if "generators/" in vae_config and name != "per_teacher_conditional":
            fit_args.append(f"--model.public_vae={public_vae}")
        row = {"row": name, "seconds": {"fit": timed(lambda: cli_main(fit_args))}}
        pool = args.pate_pool_size if selection.endswith("generate_pate.yaml") else args.pool_size
        predict = ["predict", "--config", str(REPO / "configs" / selection), *CPU, *data, f"--data.run_dir={run}",
                   teachers, f"--data.pool_size={pool}"]
        if not selection.endswith("generate_pate.yaml"):
            predict.append(f"--trainer.callbacks.init_args.teachers_dir={shared / 'trained_nets'}")
        row["seconds"]["generate"] = timed(lambda: cli_main(predict))
        row["seconds"]["combine"] = timed(lambda: combine_command(run_dir=str(run)))
        metadata = json.loads((run / "synthetic/combined_metadata.json").read_text())
        samples = torch.load(run / "synthetic/combined_samples.pt", weights_only=True)
        if len(samples):
            write_png_grid(Path("docs/results") / f"families_{name}_n{n}.png", samples[torch.randperm(len(samples))[:64]])
        report = {}
        if len(samples):
            started = time.perf_counter()
            report = pate_command(
                run_dir=str(run), data_dir=args.data_dir, teachers_dir=str(shared / "trained_nets"), query_source="synthetic",
                num_queries=None, mechanism="confident_gnmax", threshold=threshold, sigma1=sigma1, sigma2=sigma2,
                accelerator="cpu", student=_student(args.student_epochs),
            )
            row["seconds"]["pate"] = round(time.perf_counter() - started, 1)
        answered = report.get("answered_label_counts") or [0] * 10
        row.update({
            "kept": metadata["num_samples"],
            "asked": report.get("queries_asked", 0),
            "answered": report.get("queries_answered", 0),
            "smallest_class_share": round(min(answered) / max(1, sum(answered)), 4),
            "generator_label_agreement": report.get("generator_label_agreement"),
            "epsilon_data_independent": (report.get("privacy") or {}).get("epsilon_data_independent"),
            "epsilon_data_dependent": (report.get("privacy") or {}).get("epsilon_data_dependent"),
            "delta": (report.get("privacy") or {}).get("delta"),
            "privacy_stages": metadata["privacy"]["stages"],
            "end_to_end_inputs": not any(s["reads_private_data"] for s in metadata["privacy"]["stages"]),
            "student_accuracy": (report.get("student") or {}).get("test_accuracy"),
        })
        rows.append(row)
        write_json(Path("docs/results/families_table.json"), _result(args, n, threshold, sigma1, sigma2, times, rows))
    write_text(Path(f"docs/results/families_table_n{n}.md"), _markdown(rows, n))


def _student(epochs: int):
    from pate_lightning.pate.command import StudentSettings

    return StudentSettings(epochs=epochs)


def _result(args, n, threshold, sigma1, sigma2, times, rows) -> dict:
    return {
        "teachers": n, "args": vars(args), "confident_gnmax": {"threshold": threshold, "sigma1": sigma1, "sigma2": sigma2},
        "seconds_shared": times, "rows": rows, "machine": "2 shared CPU cores, OMP_NUM_THREADS=1",
        "command": f"PYTHONPATH=. OMP_NUM_THREADS=1 python experiments/families_table.py --teachers {n}",
    }


def _markdown(rows: list[dict], n: int) -> str:
    lines = [f"Families at {n} teachers (docs/results/families_table.json)", "",
             "| row | kept | asked | answered | min class share | agreement | eps (data-dep.) | private inputs | student |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        eps = r["epsilon_data_dependent"]
        lines.append(
            f"| {r['row']} | {r['kept']} | {r['asked']} | {r['answered']} | {r['smallest_class_share']:.1%} | "
            f"{r['generator_label_agreement'] if r['generator_label_agreement'] is None else format(r['generator_label_agreement'], '.1%')} | "
            f"{'-' if eps is None else format(eps, '.2f')} | {'none' if r['end_to_end_inputs'] else 'yes (not DP)'} | "
            f"{'-' if r['student_accuracy'] is None else format(r['student_accuracy'], '.1%')} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
