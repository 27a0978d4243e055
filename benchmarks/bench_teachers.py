"""`make bench`: the sequential way the guide describes against pate-lightning's default path.

(a) baseline: one fresh Lightning ``Trainer.fit`` per teacher, in sequence, batch 32;
(b) ours: the default path (teachers stacked ``ensemble_size`` at a time).
Both train the same teachers for the same epochs, in this one process. Prints teacher-epochs per
second, their ratio, achieved GFLOP/s (FLOPs counted with ``torch.utils.flop_counter``) and this
machine's fp32 matmul GFLOP/s measured in the same run; likewise candidates labeled per second
for generation + labeling. Writes the figures to a JSON file.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import shutil
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.bench_generation import bench_generation
from pate_lightning.cli import cli_main
from pate_lightning.modules.teacher_vae import TeacherVAEModule
from pate_lightning.runner import default_ensemble_size

REPO = Path(__file__).resolve().parents[1]


def matmul_gflops(size: int = 2048, repeats: int = 10, device: str = "cpu") -> float:
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    a @ b  # warm-up
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync(device)
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def vae_step_flops(k: int, batch_size: int = 32) -> float:
    """FLOPs of one training step (forward + backward) of k stacked teachers."""
    model = TeacherVAEModule(teacher_ids=list(range(k)))
    images = torch.rand(k, batch_size, 1, 28, 28)
    with FlopCounterMode(display=False) as counter:
        loss, _ = model._shared_step((images, None))
        loss.backward()
    return float(counter.get_total_flops())


def fit_seconds(run_dir: Path, data_dir: str, teachers: list[int], epochs: int, ensemble_size: int, accelerator: str) -> float:
    args = [
        "fit", "--config", str(REPO / "configs/teacher_vae.yaml"), f"--data.data_dir={data_dir}",
        f"--data.run_dir={run_dir}", f"--data.teacher_ids={teachers}", f"--trainer.max_epochs={epochs}",
        f"--trainer.accelerator={accelerator}", "--trainer.enable_progress_bar=false",
        "--trainer.enable_checkpointing=false", f"--ensemble_size={ensemble_size}",
    ]
    start = time.perf_counter()
    cli_main(args)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teachers", type=int, default=16, help="teachers trained by each path")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--ensemble_size", type=int, default=None, help="ours; default: the per-accelerator default")
    parser.add_argument("--sweep", type=int, nargs="*", default=[], help="also time these ensemble sizes")
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--data_dir", default=str(REPO / "data"))
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/latest.json"))
    args = parser.parse_args()

    device = "cuda" if args.accelerator in ("gpu", "cuda") else "cpu"
    size = args.ensemble_size or default_ensemble_size(args.accelerator)
    teachers = list(range(args.teachers))
    teacher_epochs = args.teachers * args.epochs
    flops_per_teacher_epoch = vae_step_flops(1) * 8  # 240 images / batch 32 -> 8 steps (7 full + 1 half, counted full)

    work = Path(tempfile.mkdtemp(prefix="pate-bench-"))
    try:
        baseline = fit_seconds(work / "baseline", args.data_dir, teachers, args.epochs, 1, args.accelerator)
        ours = fit_seconds(work / "ours", args.data_dir, teachers, args.epochs, size, args.accelerator)
        sweep = {}
        for k in args.sweep:
            sweep[k] = teacher_epochs / fit_seconds(work / f"k{k}", args.data_dir, teachers, args.epochs, k, args.accelerator)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    peak = matmul_gflops(device=device)
    result = {
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "threads": torch.get_num_threads(),
                    "device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "torch": torch.__version__},
        "vae_training": {
            "teachers": args.teachers, "epochs": args.epochs, "ensemble_size": size,
            "baseline_teacher_epochs_per_s": teacher_epochs / baseline,
            "ours_teacher_epochs_per_s": teacher_epochs / ours,
            "speedup": baseline / ours,
            "baseline_gflops": flops_per_teacher_epoch * teacher_epochs / baseline / 1e9,
            "ours_gflops": flops_per_teacher_epoch * teacher_epochs / ours / 1e9,
            "sweep_teacher_epochs_per_s": sweep,
        },
        "matmul_fp32_gflops": peak,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    result["generation_labeling"] = bench_generation(args.data_dir, args.accelerator, peak)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    v = result["vae_training"]
    print(f"machine: {result['machine']['device']}, {result['machine']['threads']} threads, matmul fp32 {peak:.1f} GFLOP/s")
    print(f"VAE training, {args.teachers} teachers x {args.epochs} epochs:")
    print(f"  {'path':<28}{'teacher-epochs/s':>18}{'GFLOP/s':>10}")
    print(f"  {'baseline (Trainer/teacher)':<28}{v['baseline_teacher_epochs_per_s']:>18.2f}{v['baseline_gflops']:>10.2f}")
    print(f"  {f'ours (ensemble_size={size})':<28}{v['ours_teacher_epochs_per_s']:>18.2f}{v['ours_gflops']:>10.2f}")
    print(f"  speedup: {v['speedup']:.2f}x")
    for k, rate in sweep.items():
        print(f"  sweep ensemble_size={k}: {rate:.2f} teacher-epochs/s")
    g = result["generation_labeling"]
    print(f"generation+labeling, {g['teachers']} teachers x {g['pool_size']} candidates: {g['candidates_per_s']:.0f} "
          f"candidates/s, {g['gflops']:.1f} GFLOP/s ({100 * g['gflops'] / peak:.0f}% of matmul), "
          f"peak RSS {g['peak_rss_mib']:.0f} MiB (+{g['peak_rss_growth_mib']:.0f} MiB during generation)")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
