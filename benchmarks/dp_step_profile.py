"""Time one DP-SGD step of K stacked teachers, and the share of its noise draws, at several K.

Trains ``DPTeacherVAEModule`` (the default VAE, ``configs/teacher_vae_dp.yaml``'s settings, noise from OS
entropy) for a few steps on real MNIST shards and times each step from Lightning's batch-start to
batch-end hooks: the DP noise draw (``_privatize``), the reparameterization draw (``_draw_noise``) and the
torch calls each makes (counted with ``torch.overrides.TorchFunctionMode`` in the first step: host work
that grows with K shows up there whatever the device). That first step is a warm-up and is not timed. Imports
only ``pate_lightning``, so the same script times an older checkout (``PYTHONPATH=that_checkout``).

    python -m benchmarks.dp_step_profile --teachers 16 64 250 --out benchmarks/results/dp_step_profile.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch
from lightning.pytorch import Callback, Trainer

from pate_lightning.data.poisson import PoissonShardDataModule
from pate_lightning.generators.dp.module import DPTeacherVAEModule
from pate_lightning.generators.kl_annealing import KLAnnealing

PARTS = ("_privatize", "_draw_noise")  # the DP noise draw, the reparameterization draw


class CallCounter(torch.overrides.TorchFunctionMode):
    """Counts torch calls (functions and tensor methods) made while it is active."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func: Callable, types: Any, args: tuple = (), kwargs: Any = None) -> Any:
        self.calls += 1
        return func(*args, **(kwargs or {}))


class StepTimer(Callback):
    """Seconds of each training step, and of the timed parts within it (wrapped on the module)."""

    def __init__(self, model: DPTeacherVAEModule, cuda: bool) -> None:
        # on a GPU the work is asynchronous: wait for it at each clock reading
        self.sync = torch.cuda.synchronize if cuda else (lambda: None)
        self.steps: list[float] = []
        self.parts: dict[str, list[float]] = {name: [] for name in PARTS}
        self.calls: dict[str, list[int]] = {name: [] for name in PARTS}
        self._start = 0.0
        for name in PARTS:
            setattr(model, name, self._timed(name, getattr(model, name)))

    def _timed(self, name: str, method: Callable) -> Callable:
        def wrapper(*args: Any) -> Any:
            if not self.steps:  # the warm-up step: count the calls (counting slows them), time nothing
                with CallCounter() as counter:
                    result = method(*args)
                self.calls[name].append(counter.calls)
                return result
            self.sync()
            start = time.perf_counter()
            result = method(*args)
            self.sync()
            self.parts[name].append(time.perf_counter() - start)
            return result
        return wrapper

    def on_train_batch_start(self, *args: Any) -> None:
        self.sync()
        self._start = time.perf_counter()

    def on_train_batch_end(self, *args: Any) -> None:
        self.sync()
        self.steps.append(time.perf_counter() - self._start)


def profile(teachers: int, steps: int, data_dir: str, work: Path, accelerator: str = "cpu") -> dict[str, Any]:
    ids = list(range(teachers))
    model = DPTeacherVAEModule(teacher_ids=ids, noise_multiplier=1.0, weight_decay=0.0)
    data = PoissonShardDataModule(data_dir=data_dir, run_dir=str(work / f"k{teachers}"), num_teachers=250,
                                  teacher_ids=ids, batch_size=32, augment=False)
    timer = StepTimer(model, cuda=accelerator in ("gpu", "cuda"))
    trainer = Trainer(max_steps=steps + 1, accelerator=accelerator, devices=1, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, default_root_dir=work,
                      callbacks=[KLAnnealing(5), timer])
    trainer.fit(model, datamodule=data)
    step = statistics.median(timer.steps[1:])
    noise = statistics.median(timer.parts["_privatize"])
    reparam = statistics.median(timer.parts["_draw_noise"])
    return {
        "teachers": teachers, "steps_timed": len(timer.steps) - 1,
        "step_s": step, "per_teacher_ms": 1000 * step / teachers,
        "dp_noise_s": noise, "dp_noise_share": noise / step,
        "reparam_noise_s": reparam, "reparam_noise_share": reparam / step,
        "dp_noise_torch_calls": timer.calls["_privatize"][0],
        "reparam_noise_torch_calls": timer.calls["_draw_noise"][0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teachers", type=int, nargs="+", default=[16, 64, 250])
    parser.add_argument("--steps", type=int, default=3, help="timed steps per K, after one warm-up step")
    parser.add_argument("--data_dir", default="data")
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--label", default="", help="stored with the figures, e.g. which code was timed")
    parser.add_argument("--out", default="benchmarks/results/dp_step_profile.json")
    args = parser.parse_args()
    result: dict[str, Any] = {
        "label": args.label, "threads": torch.get_num_threads(), "torch": torch.__version__,
        "platform": platform.platform(), "runs": [],
    }
    with tempfile.TemporaryDirectory(prefix="pate-dp-profile-") as work:
        for k in args.teachers:
            run = profile(k, args.steps, args.data_dir, Path(work), args.accelerator)
            result["runs"].append(run)
            print(json.dumps(run), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
