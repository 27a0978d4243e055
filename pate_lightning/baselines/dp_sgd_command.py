"""``pate-lightning dp_sgd_student``: the baseline route, DP-SGD on the union of the shards -> dp_sgd_student/report.json.

The report has the privacy fields of ``pate/report.json`` (``private``, ``delta``, ``conversion``,
``privacy_scope``, ``epsilon_labels``, ``epsilon_end_to_end``), so ``compare`` reads both alike. The scope is
``end_to_end``: the only stage that reads private data is DP-SGD itself. Its epsilon is opacus's RDP
accountant's; the package's own DP-SGD accounting of the same noise, rate and steps is recorded beside it.
"""

from __future__ import annotations

import logging
import secrets
import time
from pathlib import Path
from typing import Any, Optional

import torch

from pate_lightning import layout
from pate_lightning.baselines.dp_sgd_student import DPSGDSettings, accuracy_on, train_dp_sgd
from pate_lightning.data import shards as shard_files
from pate_lightning.data.sources import load_split
from pate_lightning.io import write_json
from pate_lightning.pate.command import vote_device
from pate_lightning.pate.queries import holdout_set
from pate_lightning.privacy import CONVERSION_REFERENCES, NOT_PRIVATE, noise_source
from pate_lightning.seeding import Stream, private_generators
from pate_lightning.privacy.dp_sgd_accounting import dp_sgd_epsilon, dp_sgd_privacy_entry

log = logging.getLogger(__name__)

CONVERSION = "balle2020"  # opacus's RDP accountant converts as Balle et al. 2020 (Prop. 12), as dp-accounting does
SCOPE_NOTE = ("the student is trained on the private records by DP-SGD: the only stage that reads private data is DP, "
              "so the epsilon covers the whole route")


def union_of_shards(run_dir: Path, data_dir: str, dataset: str, num_teachers: int, teacher_ids: Optional[list[int]],
                    shard_seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The training images (N, 1, 28, 28) in [0, 1] and labels (N,) of the selected teachers' shards together."""
    images, labels = load_split(dataset, data_dir, train=True)
    path = layout.shard_file(run_dir)
    shards = shard_files.load_or_create(path, len(images), num_teachers, shard_seed)
    ids = shard_files.select_teachers(shards, teacher_ids, None, None, path)
    index = torch.tensor(sorted(i for t in ids for i in shards[t]))
    return images[index].unsqueeze(1).float().div_(255), labels[index]


def dp_sgd_student_command(
    run_dir: str = ".",
    data_dir: str = "data",
    dataset: str = "mnist",
    num_teachers: int = 250,
    teacher_ids: Optional[list[int]] = None,
    shard_seed: int = 42,
    protocol: str = "half",
    dp_sgd: DPSGDSettings = DPSGDSettings(),
    accelerator: str = "auto",
    seed: Optional[int] = None,
) -> dict[str, Any]:
    """Train the student on the union of the teachers' shards with DP-SGD (opacus) and write its report.

    Args:
        run_dir: the run directory (its shard_indices.json is reused or made from num_teachers and shard_seed).
        data_dir: the prepared MNIST folder.
        dataset: the MNIST-family dataset under data_dir.
        num_teachers: the partition's shard count (the records are the union of the shards).
        teacher_ids: shards whose records are used (default: all, i.e. the whole training set).
        shard_seed: the partition's seed (the classifiers' data seed).
        protocol: the student's test set, as ``pate``: half (last 5,000 MNIST test images) or papers (last 1,000).
        dp_sgd: the DP-SGD settings (target epsilon, delta, epochs, batch, clipping, optimizer, architecture).
        accelerator: auto, cpu, gpu, cuda or mps.
        seed: null (default): DP-SGD noise from OS entropy (private). An int seeds the noise and the
            initialisation: reproducible, and the report says NOT PRIVATE.
    """
    started = time.perf_counter()
    dp_sgd.check()
    noise = noise_source(seed)
    init_seed = seed if seed is not None else secrets.randbits(31)  # the initial weights: not privacy noise
    sampling = private_generators(seed, [0], Stream.POISSON)[0]  # the Poisson batches: privacy randomness
    device = vote_device(accelerator)
    root = Path(run_dir)
    images, labels = union_of_shards(root, data_dir, dataset, num_teachers, teacher_ids, shard_seed)
    test_images, test_labels = holdout_set(data_dir, protocol, dataset)
    result = train_dp_sgd(images, labels, dp_sgd, noise.votes, init_seed, device, sampling)
    package_epsilon, order = dp_sgd_epsilon(result.noise_multiplier, result.sample_rate, result.steps, dp_sgd.delta,
                                            CONVERSION)
    entry = dp_sgd_privacy_entry(result.noise_multiplier, result.sample_rate, result.steps, "dp_sgd_student",
                                 "opacus DP-SGD on the union of the shards, Poisson sampling")
    run = {
        "route": "dp_sgd_student",
        "protocol": protocol,
        "records": len(labels),
        "architecture": f"{dp_sgd.architecture} (batch norm -> group norm, opacus ModuleValidator.fix)",
        "settings": {k: getattr(dp_sgd, k) for k in DPSGDSettings.__dataclass_fields__},
        "student": {"test_accuracy": accuracy_on(result.model, test_images, test_labels, dp_sgd.normalization, device),
                    "test_images": len(test_labels), "public_only_accuracy": None},
        "privacy": {
            **noise.describe(),
            "accountant": "opacus RDP (PrivacyEngine.make_private_with_epsilon)",
            "delta": dp_sgd.delta, "conversion": CONVERSION, "conversion_reference": CONVERSION_REFERENCES[CONVERSION],
            "noise_multiplier": result.noise_multiplier, "sample_rate": result.sample_rate, "steps": result.steps,
            "max_grad_norm": dp_sgd.max_grad_norm,
            "privacy_scope": "end_to_end", "scope_note": SCOPE_NOTE,
            "epsilon_labels": None, "epsilon_end_to_end": result.epsilon, "order_end_to_end": order,
            "epsilon_package_accounting": package_epsilon, "ledger": [entry],
        },
        "seconds": round(time.perf_counter() - started, 2),
        "device": str(device),
    }
    write_json(layout.dp_sgd_student_report_file(root), {"runs": [run]})
    print(f"dp_sgd_student: {len(labels)} records, epsilon {result.epsilon:.3f} at delta {dp_sgd.delta:g} "
          f"(package accounting {package_epsilon:.3f}, {CONVERSION}), student {100 * run['student']['test_accuracy']:.2f}%"
          + ("" if noise.private else f"; {NOT_PRIVATE} (seeded noise)"))
    return run
