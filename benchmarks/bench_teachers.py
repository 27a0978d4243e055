"""`make bench`: the sequential way the guide describes against pate-lightning's default path.

(a) baseline: one fresh Lightning ``Trainer.fit`` per teacher, in sequence, batch 32;
(b) ours: the default path (teachers stacked ``ensemble_size`` at a time);
(c) DP-SGD (``configs/teacher_vae_dp.yaml``) against (b) on the same teachers, epochs and expected batch.
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
from benchmarks.dp_step_profile import profile as profile_dp_step
from pate_lightning.pipeline.cli import cli_main
from pate_lightning.generators.module import TeacherVAEModule
from pate_lightning.pipeline.teacher_groups import default_ensemble_size

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


def fit_seconds(
    run_dir: Path, data_dir: str, teachers: list[int], epochs: int, ensemble_size: int, accelerator: str,
    config: str = "configs/teacher_vae.yaml", extra: tuple[str, ...] = (),
) -> float:
    args = [
        "fit", "--config", str(REPO / config), f"--data.data_dir={data_dir}",
        f"--data.run_dir={run_dir}", f"--data.teacher_ids={teachers}", f"--trainer.max_epochs={epochs}",
        f"--trainer.accelerator={accelerator}", "--trainer.enable_progress_bar=false",
        "--trainer.enable_checkpointing=false", f"--ensemble_size={ensemble_size}", *extra,
    ]
    start = time.perf_counter()
    cli_main(args)
    return time.perf_counter() - start


# DP run with the non-DP path's settings: same augmentation, KL schedule, expected batch (32 -> 8 steps
# per 240-record epoch either way), a fixed noise multiplier (no solve) and noise from OS entropy
DP_MATCHING = (
    "--data.init_args.augment=true", "--model.init_args.weight_decay=0.00001", "--model.init_args.target_epsilon=null",
    "--model.init_args.noise_multiplier=1.0", "--trainer.callbacks.init_args.kl_annealing_epochs=20",
)


def bench_dp(work: Path, data_dir: str, teachers: int, epochs: int, size: int, accelerator: str, repeats: int = 2) -> dict:
    """Teacher-epochs/s of DP-SGD and of the non-DP path; alternated and the best of ``repeats`` each,
    since the cores may be shared with other jobs."""
    ids = list(range(teachers))
    best = {"non_dp": float("inf"), "dp": float("inf")}
    for r in range(repeats):
        best["non_dp"] = min(best["non_dp"], fit_seconds(work / f"nondp{r}", data_dir, ids, epochs, size, accelerator))
        best["dp"] = min(best["dp"], fit_seconds(
            work / f"dp{r}", data_dir, ids, epochs, size, accelerator, "configs/teacher_vae_dp.yaml", DP_MATCHING))
    rates = {name: teachers * epochs / seconds for name, seconds in best.items()}
    return {
        "teachers": teachers, "epochs": epochs, "ensemble_size": size, "repeats": repeats,
        "non_dp_teacher_epochs_per_s": rates["non_dp"], "dp_teacher_epochs_per_s": rates["dp"],
        "dp_cost_ratio": rates["non_dp"] / rates["dp"],
    }


def _write(out: Path, result: dict) -> None:
    # written after every section, so a crash late in a long device run keeps what was measured
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teachers", type=int, default=16, help="teachers trained by each path")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--baseline_teachers", type=int, default=None,
                        help="teachers for the baseline (default --teachers); on a GPU the full baseline takes too long")
    parser.add_argument("--baseline_epochs", type=int, default=None, help="epochs for the baseline (default --epochs)")
    parser.add_argument("--ensemble_size", type=int, default=None, help="ours; default: the per-accelerator default")
    parser.add_argument("--sweep", type=int, nargs="*", default=[], help="also time these ensemble sizes")
    parser.add_argument("--sweep_epochs", type=int, default=None, help="epochs for each sweep point (default --epochs)")
    parser.add_argument("--gen_teachers", type=int, default=2, help="teachers for generation + labeling (0 skips it)")
    parser.add_argument("--gen_pool", type=int, default=20000, help="candidates per teacher for generation + labeling")
    parser.add_argument("--dp_epochs", type=int, default=3, help="epochs for DP vs non-DP, each timed twice (0 skips)")
    parser.add_argument("--only_dp", action="store_true", help="time only DP vs non-DP (skips baseline, sweep, generation)")
    parser.add_argument("--dp_step_profile", type=int, nargs="*", default=[],
                        help="also time one DP-SGD step and its noise draws at these stack sizes (benchmarks/dp_step_profile.py)")
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--data_dir", default=str(REPO / "data"))
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/latest.json"))
    args = parser.parse_args()

    device = "cuda" if args.accelerator in ("gpu", "cuda") else "cpu"
    size = args.ensemble_size or default_ensemble_size(args.accelerator, "teacher_vae")
    out = Path(args.out)
    peak = matmul_gflops(size=8192 if device == "cuda" else 2048, device=device)
    result: dict = {
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "threads": torch.get_num_threads(),
                    "device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "torch": torch.__version__},
        "matmul_fp32_gflops": peak,
    }
    print(f"machine: {result['machine']['device']}, {result['machine']['threads']} threads, matmul fp32 {peak:.1f} GFLOP/s",
          flush=True)
    flops_per_teacher_epoch = vae_step_flops(1) * 8  # 240 images / batch 32 -> 8 steps (7 full + 1 half, counted full)

    def rate_and_gflops(teachers: int, epochs: int, seconds: float) -> tuple[float, float]:
        return teachers * epochs / seconds, flops_per_teacher_epoch * teachers * epochs / seconds / 1e9

    work = Path(tempfile.mkdtemp(prefix="pate-bench-"))
    base_t, base_e = args.baseline_teachers or args.teachers, args.baseline_epochs or args.epochs
    try:
        # untimed warm-up: the first fit in a process pays one-off costs (lazy imports, first reads
        # of the dataset, allocator and kernel warm-up) that would otherwise land on whichever path runs first
        fit_seconds(work / "warmup", args.data_dir, [0], 1, 1, args.accelerator)
        if args.dp_epochs > 0:
            d = result["dp_sgd"] = bench_dp(work, args.data_dir, args.teachers, args.dp_epochs, size, args.accelerator)
            _write(out, result)
            print(f"DP-SGD vs non-DP, {args.teachers} teachers x {args.dp_epochs} epochs, ensemble_size={size} (best of "
                  f"{d['repeats']}): non-DP {d['non_dp_teacher_epochs_per_s']:.2f}, DP {d['dp_teacher_epochs_per_s']:.2f} "
                  f"teacher-epochs/s; DP costs {d['dp_cost_ratio']:.2f}x", flush=True)
        for k in args.dp_step_profile:
            result.setdefault("dp_step_profile", []).append(profile_dp_step(k, 3, args.data_dir, work, args.accelerator))
            _write(out, result)
            print(f"DP step profile: {json.dumps(result['dp_step_profile'][-1])}", flush=True)
        if args.only_dp:
            return
        ours_rate, ours_gflops = rate_and_gflops(
            args.teachers, args.epochs,
            fit_seconds(work / "ours", args.data_dir, list(range(args.teachers)), args.epochs, size, args.accelerator),
        )
        base_rate, base_gflops = rate_and_gflops(
            base_t, base_e, fit_seconds(work / "baseline", args.data_dir, list(range(base_t)), base_e, 1, args.accelerator)
        )
        v = result["vae_training"] = {
            "teachers": args.teachers, "epochs": args.epochs, "ensemble_size": size,
            "ours_seconds": args.teachers * args.epochs / ours_rate,
            "baseline_teachers": base_t, "baseline_epochs": base_e,
            "baseline_teacher_epochs_per_s": base_rate, "ours_teacher_epochs_per_s": ours_rate,
            "speedup": ours_rate / base_rate, "baseline_gflops": base_gflops, "ours_gflops": ours_gflops,
            "sweep_teacher_epochs_per_s": {},
        }
        _write(out, result)
        print(f"VAE training, ours: {args.teachers} teachers x {args.epochs} epochs in {v['ours_seconds']:.1f} s; "
              f"baseline: {base_t} teachers x {base_e} epochs", flush=True)
        print(f"  {'path':<28}{'teacher-epochs/s':>18}{'GFLOP/s':>10}")
        print(f"  {'baseline (Trainer/teacher)':<28}{base_rate:>18.2f}{base_gflops:>10.2f}")
        print(f"  {f'ours (ensemble_size={size})':<28}{ours_rate:>18.2f}{ours_gflops:>10.2f}")
        print(f"  speedup: {v['speedup']:.2f}x", flush=True)
        sweep_epochs = args.sweep_epochs or args.epochs
        for k in args.sweep:
            seconds = fit_seconds(work / f"k{k}", args.data_dir, list(range(args.teachers)), sweep_epochs, k, args.accelerator)
            v["sweep_teacher_epochs_per_s"][k] = args.teachers * sweep_epochs / seconds
            _write(out, result)
            print(f"  sweep ensemble_size={k} ({args.teachers} teachers x {sweep_epochs} epochs): "
                  f"{v['sweep_teacher_epochs_per_s'][k]:.2f} teacher-epochs/s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    _write(out, result)
    if args.gen_teachers < 1:
        return
    g = result["generation_labeling"] = bench_generation(
        args.data_dir, args.accelerator, peak, teachers=args.gen_teachers, pool_size=args.gen_pool
    )
    _write(out, result)
    print(f"generation+labeling, {g['teachers']} teachers x {g['pool_size']} candidates: {g['candidates_per_s']:.0f} "
          f"candidates/s, {g['gflops']:.1f} GFLOP/s ({100 * g['gflops'] / peak:.0f}% of matmul), "
          f"peak RSS {g['peak_rss_mib']:.0f} MiB (+{g['peak_rss_growth_mib']:.0f} MiB during generation)")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
