"""Does a refactor change any output? The same tiny seeded run through two checkouts, every output file compared.

    python experiments/byte_identical.py run CHECKOUT OUT     # one run with CHECKOUT's code and configs into OUT
    python experiments/byte_identical.py compare A B [--json FILE]   # every file of run A against run B

``run`` chains fit classifiers -> fit VAEs -> predict (generate) -> combine -> pate on teachers 0 and 1
of the 250 MNIST shards, with short training, a 1,000-candidate pool and ``seed: 1`` for PATE's
noise. Each stage's config is the checkout's own ``configs/<stage>.yaml`` with the overrides below
merged in, so commits whose class paths differ (before and after the package move) run the same
settings. Every run happens in the same directory (``OUT``'s parent ``/_run``), moved to ``OUT``
afterwards, so absolute paths recorded in reports are equal.

``compare`` reports per file: identical bytes, or for JSON the key paths that differ with timing
keys left out, for ``.pt`` whether every tensor is equal, else the differing lines.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

from pate_lightning.pipeline.chain import deep_merge  # the harness's own checkout; each run gets its own

DATA_DIR = os.environ.get("PATE_TEST_DATA_DIR", "/work/main/data")
TEACHERS = [0, 1]
TIMING = re.compile(r"(second|elapsed|duration|time|started|finished|date|per_s|throughput|wall)", re.I)

SHARED_DATA = {"data_dir": DATA_DIR, "teacher_ids": TEACHERS}
STAGES = [  # (command, config file, overrides merged into the checkout's config)
    ("fit", "teacher_classifier.yaml", {
        "trainer": {"max_epochs": 5, "accelerator": "cpu", "enable_progress_bar": False},
        "data": {"init_args": dict(SHARED_DATA)},
    }),
    ("fit", "teacher_vae.yaml", {
        "trainer": {"max_epochs": 10, "accelerator": "cpu", "enable_progress_bar": False},
        "data": {"init_args": dict(SHARED_DATA)},
    }),
    ("predict", "generate.yaml", {
        "trainer": {"accelerator": "cpu", "enable_progress_bar": False},
        "data": {"init_args": {**SHARED_DATA, "pool_size": 1000, "batch_size": 250}},
        "callback": {"confidence_threshold": 0.145, "min_nn_distance": 5.0, "min_diversity_distance": 0.5, "min_per_class": 5,
                     "max_per_class": 10, "save_candidates": True, "save_grid": True},
    }),
    ("combine", "combine.yaml", {}),
    ("pate", "pate.yaml", {
        "data_dir": DATA_DIR, "accelerator": "cpu", "num_queries": 200, "mechanism": "gnmax", "sigma": 1.0,
        "seed": 1, "student": {"epochs": 1},
    }),
]


def stage_config(checkout: Path, name: str, override: dict, run_dir: Path) -> dict:
    config = yaml.safe_load((checkout / "configs" / name).read_text())
    override = copy.deepcopy(override)
    callback = override.pop("callback", None)
    config = deep_merge(config, override)
    if "data" in config:
        config["data"]["init_args"]["run_dir"] = str(run_dir)
    else:
        config["run_dir"] = str(run_dir)
    if callback:  # the labeling callback, whatever its class path in this checkout
        (entry,) = [c for c in config["trainer"]["callbacks"] if c["class_path"].endswith("LabelingCallback")]
        entry["init_args"] = deep_merge(entry.get("init_args") or {}, callback)
    return config


def run(checkout: Path, out: Path) -> None:
    checkout, out = checkout.resolve(), out.resolve()
    run_dir = out.parent / "_run"  # one fixed path for every run: reports that record it stay comparable
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    configs = out.parent / "_configs"
    configs.mkdir(exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(checkout), "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    times = {}
    for command, name, override in STAGES:
        path = configs / name
        path.write_text(yaml.safe_dump(stage_config(checkout, name, override, run_dir)))
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "pate_lightning", command, "--config", str(path)],
                              cwd=checkout, env=env, capture_output=True, text=True)
        times[name] = round(time.perf_counter() - started, 1)
        if done.returncode:
            sys.exit(f"{checkout}: {command} {name} failed:\n{done.stderr[-4000:]}")
        print(f"{name}: {times[name]} s", flush=True)
    shutil.rmtree(out, ignore_errors=True)
    run_dir.rename(out)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=checkout, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "pate_lightning", "configs"], cwd=checkout,
                           capture_output=True, text=True).stdout.strip()
    (out.parent / f"{out.name}.meta.json").write_text(json.dumps(
        {"checkout": str(checkout), "commit": commit, "dirty": bool(dirty), "seconds": times}, indent=1))


def json_diff(a, b, path="") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b), key=str):
            if TIMING.search(str(key)):  # wall-clock fields: listed, not counted as a difference
                if key in a and key in b and a[key] != b[key]:
                    out.append(f"timing {path}/{key}")
                continue
            if key not in a or key not in b:
                out.append(f"{path}/{key}: only in {'B' if key not in a else 'A'}")
            else:
                out += json_diff(a[key], b[key], f"{path}/{key}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in json_diff(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: {json.dumps(a)[:80]} != {json.dumps(b)[:80]}"]


def tensors_equal(a, b) -> bool:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(tensors_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(tensors_equal(x, y) for x, y in zip(a, b))
    return a == b


def compare_file(a: Path, b: Path) -> dict:
    if a.read_bytes() == b.read_bytes():
        return {"status": "identical"}
    if a.suffix == ".json":
        diffs = json_diff(json.loads(a.read_text()), json.loads(b.read_text()))
        real = [d for d in diffs if not d.startswith("timing ")]
        return {"status": "differs" if real else "timing_only", "differences": diffs}
    if a.suffix in (".pt", ".pth"):
        x, y = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
        if tensors_equal(x, y):
            return {"status": "same_tensors"}
        if isinstance(x, dict) and isinstance(y, dict) and x.keys() == y.keys():
            return {"status": "differs", "differences": [f"[{k!r}] differs" for k in x if not tensors_equal(x[k], y[k])]}
        return {"status": "differs"}
    if a.suffix in (".csv", ".md", ".txt"):
        lines = [f"{x!r} != {y!r}" for x, y in zip(a.read_text().splitlines(), b.read_text().splitlines()) if x != y]
        return {"status": "differs", "differences": lines[:5]}
    return {"status": "differs"}


def outputs(run_dir: Path) -> set[Path]:
    """Every file of a run except TensorBoard event files (their names and records carry wall-clock time and pid)."""
    return {p.relative_to(run_dir) for p in run_dir.rglob("*") if p.is_file() and "tfevents" not in p.name}


def compare(a: Path, b: Path) -> dict:
    files_a, files_b = outputs(a), outputs(b)
    result = {str(p): compare_file(a / p, b / p) for p in sorted(files_a & files_b)}
    result.update({str(p): {"status": "only in A"} for p in sorted(files_a - files_b)})
    result.update({str(p): {"status": "only in B"} for p in sorted(files_b - files_a)})
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    one = sub.add_parser("run")
    one.add_argument("checkout", type=Path)
    one.add_argument("out", type=Path)
    two = sub.add_parser("compare")
    two.add_argument("a", type=Path)
    two.add_argument("b", type=Path)
    two.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.command == "run":
        run(args.checkout, args.out)
        return
    result = compare(args.a, args.b)
    for name, entry in result.items():
        print(f"{entry['status']:>12}  {name}" + "".join(f"\n              {d}" for d in entry.get("differences", [])))
    if args.json:
        args.json.write_text(json.dumps({"a": str(args.a), "b": str(args.b), "files": result}, indent=1) + "\n")


if __name__ == "__main__":
    main()
