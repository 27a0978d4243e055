"""Time one training step of K stacked teachers, count its host torch calls, at several K.

Trains a few steps on real MNIST shards (one warm-up step, then timed ones) and times each step from
Lightning's batch-start to batch-end hooks. ``--model dp_vae`` (default): ``DPTeacherVAEModule``, the
default VAE with ``configs/teacher_vae_dp.yaml``'s settings, noise from OS entropy; its timed parts are
the DP noise draw (``_privatize``) and the reparameterization draw (``_draw_noise``). ``--model vae``: the
same VAE without DP (``TeacherVAEModule``). ``--model classifier``: ``TeacherClassifierModule`` with its
dropout masks (``_masks``). In the warm-up step ``torch.overrides.TorchFunctionMode`` counts the torch
calls (functions and tensor methods) of the whole step, of the loader's batch and of each timed part:
host work that grows with K shows up there whatever the device. Imports only ``pate_lightning``, so
the same script times an older checkout (``PYTHONPATH=that_checkout python benchmarks/dp_step_profile.py``).

    python -m benchmarks.dp_step_profile --teachers 16 64 250 --out benchmarks/results/dp_step_profile.json
    python -m benchmarks.dp_step_profile --model classifier --teachers 4 16 64
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from pate_lightning.classifiers.module import TeacherClassifierModule
from pate_lightning.data.datamodule import ShardDataModule
from pate_lightning.data.poisson import PoissonShardDataModule
from pate_lightning.generators.dp.module import DPTeacherVAEModule
from pate_lightning.generators.kl_annealing import KLAnnealing
from pate_lightning.generators.module import TeacherVAEModule

# the timed parts of each model's step: the DP noise draw and the reparameterization draw; dropout masks
PARTS = {"dp_vae": ("_privatize", "_draw_noise"), "vae": ("_draw_noise",), "classifier": ("_masks",)}


class CallCounter(torch.overrides.TorchFunctionMode):
    """Counts torch calls (functions and tensor methods) made while it is active."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func: Callable, types: Any, args: tuple = (), kwargs: Any = None) -> Any:
        self.calls += 1
        return func(*args, **(kwargs or {}))


class StepTimer(Callback):
    """Seconds of each training step and of the timed parts within it (wrapped on the module); the torch
    calls of the warm-up step, of its batch and of each part."""

    def __init__(self, model: LightningModule, parts: tuple[str, ...], cuda: bool) -> None:
        # on a GPU the work is asynchronous: wait for it at each clock reading
        self.sync = torch.cuda.synchronize if cuda else (lambda: None)
        self.steps: list[float] = []
        self.parts: dict[str, list[float]] = {name: [] for name in parts}
        self.calls: dict[str, int] = {}
        self._start = 0.0
        self._counter: CallCounter | None = None
        for name in parts:
            setattr(model, name, self._timed(name, getattr(model, name)))

    def _timed(self, name: str, method: Callable) -> Callable:
        def wrapper(*args: Any) -> Any:
            if not self.steps:  # the warm-up step: count the calls (counting slows them), time nothing
                before = self._counter.calls
                result = method(*args)
                self.calls[name] = self._counter.calls - before
                return result
            self.sync()
            start = time.perf_counter()
            result = method(*args)
            self.sync()
            self.parts[name].append(time.perf_counter() - start)
            return result
        return wrapper

    def counted_batches(self, loader: Any) -> Iterator[Any]:
        """The loader's batches, the first one fetched under a call counter."""
        batches = iter(loader)
        with CallCounter() as counter:
            first = next(batches)
        self.calls["loader_batch"] = counter.calls
        yield first
        yield from batches

    def on_train_batch_start(self, *args: Any) -> None:
        if not self.steps:
            self._counter = CallCounter().__enter__()
        self.sync()
        self._start = time.perf_counter()

    def on_train_batch_end(self, *args: Any) -> None:
        self.sync()
        if not self.steps:
            self._counter.__exit__(None, None, None)
            self.calls["step"] = self._counter.calls
        self.steps.append(time.perf_counter() - self._start)


class CountedLoader:
    """A train loader whose first batch is fetched under the timer's call counter."""

    def __init__(self, loader: Any, timer: StepTimer) -> None:
        self.loader, self.timer = loader, timer

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        return self.timer.counted_batches(self.loader) if "loader_batch" not in self.timer.calls else iter(self.loader)


def build(model: str, teachers: int, data_dir: str, run_dir: str) -> tuple[LightningModule, ShardDataModule, list[Callback]]:
    ids = list(range(teachers))
    shards = dict(data_dir=data_dir, run_dir=run_dir, num_teachers=250, teacher_ids=ids, batch_size=32)
    if model == "dp_vae":
        return (DPTeacherVAEModule(teacher_ids=ids, noise_multiplier=1.0, weight_decay=0.0),
                PoissonShardDataModule(**shards, augment=False), [KLAnnealing(5)])
    if model == "vae":
        return TeacherVAEModule(teacher_ids=ids), ShardDataModule(**shards, augment=False), [KLAnnealing(5)]
    return TeacherClassifierModule(teacher_ids=ids), ShardDataModule(**shards, augment=True), []


def profile(teachers: int, steps: int, data_dir: str, work: Path, accelerator: str = "cpu",
            model: str = "dp_vae") -> dict[str, Any]:
    module, data, callbacks = build(model, teachers, data_dir, str(work / f"k{teachers}"))
    timer = StepTimer(module, PARTS[model], cuda=accelerator in ("gpu", "cuda"))
    make_loader = data.train_dataloader
    data.train_dataloader = lambda: CountedLoader(make_loader(), timer)
    trainer = Trainer(max_steps=steps + 1, accelerator=accelerator, devices=1, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, default_root_dir=work,
                      callbacks=[*callbacks, timer])
    trainer.fit(module, datamodule=data)
    step = statistics.median(timer.steps[1:])
    run = {"model": model, "teachers": teachers, "steps_timed": len(timer.steps) - 1,
           "step_s": step, "per_teacher_ms": 1000 * step / teachers,
           "step_torch_calls": timer.calls["step"], "loader_batch_torch_calls": timer.calls["loader_batch"]}
    for name in PARTS[model]:
        label = {"_privatize": "dp_noise", "_draw_noise": "reparam_noise", "_masks": "dropout_masks"}[name]
        seconds = statistics.median(timer.parts[name])
        run.update({f"{label}_s": seconds, f"{label}_share": seconds / step, f"{label}_torch_calls": timer.calls[name]})
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(PARTS), default="dp_vae")
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
            run = profile(k, args.steps, args.data_dir, Path(work), args.accelerator, args.model)
            result["runs"].append(run)
            print(json.dumps(run), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
