"""``pate-lightning eval-teachers``: any set of teacher classifiers on the MNIST test set, as a table."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Optional

from pate_lightning import layout
from pate_lightning.data.sources import load_split, prepare
from pate_lightning.errors import PateError
from pate_lightning.classifiers.loading import find_teacher_ids, load_teacher_ensemble, teacher_log_probs


def evaluate_teachers(
    teachers_dir: str | Path, teacher_ids: Optional[list[int]], data_dir: str | Path, normalization: Optional[str] = None,
    dataset: str = "mnist",
) -> dict[int, float]:
    """Test-set accuracy of each teacher."""
    ids = teacher_ids if teacher_ids is not None else find_teacher_ids(teachers_dir)
    if not ids:
        raise PateError("holds no teacher folders with a model.pth.", teachers_dir)
    prepare(dataset, data_dir)
    images, labels = load_split(dataset, data_dir, train=False)
    images = images.unsqueeze(1).float().div_(255)
    accuracy = {}
    for start in range(0, len(ids), 16):  # a few teachers at a time keeps memory bounded
        ensemble = load_teacher_ensemble(teachers_dir, ids[start : start + 16], normalization)
        predictions = teacher_log_probs(ensemble, images).argmax(-1)  # (K, N)
        for teacher_id, row in zip(ensemble.teacher_ids, predictions):
            accuracy[teacher_id] = float((row == labels).float().mean())
    return accuracy


def accuracy_table(accuracy: dict[int, float]) -> str:
    values = list(accuracy.values())
    lines = ["teacher  test accuracy", "-------  -------------"]
    lines += [f"{t:>7}  {a:>13.4f}" for t, a in sorted(accuracy.items())]
    lines.append(
        f"{len(values)} teachers: mean {statistics.fmean(values):.4f}, min {min(values):.4f}, "
        f"median {statistics.median(values):.4f}, max {max(values):.4f}"
    )
    return "\n".join(lines)


def eval_teachers_command(
    run_dir: str = ".",
    teachers_dir: str = layout.TRAINED_NETS,
    teacher_ids: Optional[list[int]] = None,
    data_dir: str = "data",
    normalization: Optional[str] = None,
    dataset: str = "mnist",
) -> dict[int, float]:
    """Evaluate teacher classifiers ({teachers_dir}/{id}/model.pth) on the full test set and print a table.

    Args:
        run_dir: the run directory.
        teachers_dir: folder of teacher folders, saferlearn's layout; relative to run_dir unless absolute.
        teacher_ids: teachers to evaluate (default: every folder with a model.pth).
        data_dir: dataset folder.
        normalization: mnist or half; default what each teacher recorded (mnist when none).
        dataset: mnist, fashion_mnist, kmnist or emnist.
    """
    accuracy = evaluate_teachers(layout.classifiers_root(run_dir, teachers_dir), teacher_ids, data_dir, normalization, dataset)
    print(accuracy_table(accuracy))
    return accuracy
