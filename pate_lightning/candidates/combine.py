"""``pate-lightning combine``: pool the per-teacher synthetic datasets into one labeled set.

Writes ``{name}_samples.pt`` (float32 N x 1 x 28 x 28 in [0, 1]), ``{name}_labels.csv``
(``index,label,confidence``), ``{name}_teacher_ids.csv`` (``index,teacher_id,source_index``) and
``{name}_metadata.json``, the metadata last.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Optional

import torch

from pate_lightning import layout
from pate_lightning.errors import PateError
from pate_lightning.io import read_json, save_torch, sha256_file, write_csv, write_json
from pate_lightning.seeding import Stream, generator
from pate_lightning.candidates.synthetic import finished_teachers, load_synthetic

log = logging.getLogger(__name__)


def subsample(labels: torch.Tensor, fraction: float, stratified: bool, gen: torch.Generator) -> torch.Tensor:
    """Sorted indices of ``fraction * n`` rows (rounded half up), per label when ``stratified``.

    >>> labels = torch.tensor([0, 0, 0, 0, 1, 1, 1])
    >>> labels[subsample(labels, 0.5, True, torch.Generator().manual_seed(0))].tolist()  # 2 of 4, 2 of 3 (1.5 up)
    [0, 0, 1, 1]
    """
    if stratified:
        parts = []
        for label in labels.unique(sorted=True).tolist():
            members = (labels == label).nonzero().flatten()
            take = math.floor(fraction * len(members) + 0.5)  # half up
            parts.append(members[torch.randperm(len(members), generator=gen)[:take]])
        chosen = torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)
    else:
        chosen = torch.randperm(len(labels), generator=gen)[: math.floor(fraction * len(labels) + 0.5)]
    return chosen.sort().values


# a report written before the privacy contract: it read private data, without DP
LEGACY_ENTRY = {"reads_private_data": True, "dp": False, "rdp": None, "note": "report without a privacy entry (older run)"}


def stage_entries(path: Path, stage: str) -> list[dict]:
    """The "privacy" entry of one teacher's stage report (a missing report or key: the legacy entry), then the
    public prior's record its generator started from ("prior_privacy"), if any."""
    report = read_json(path) if path.is_file() else {}
    entry = report.get("privacy") if isinstance(report, dict) else None
    prior = report.get("prior_privacy") if isinstance(report, dict) else None
    entries = [dict(entry) if isinstance(entry, dict) else {"stage": stage, "name": "unknown", **LEGACY_ENTRY}]
    return entries + ([dict(prior)] if isinstance(prior, dict) else [])


def pool_privacy(entries: list[dict]) -> list[dict]:
    """The distinct stage entries of the pooled teachers; a DP entry's "rdp" is the elementwise max.

    Parallel composition: each private record lives in one shard, so the pooled data set costs
    what its most expensive teacher costs, order by order.

    >>> a = {"stage": "generator", "name": "dp", "reads_private_data": True, "dp": True, "note": "",
    ...      "rdp": {"orders": [2, 4], "values": [0.1, 0.5]}}
    >>> b = {**a, "rdp": {"orders": [2, 4], "values": [0.3, 0.2]}}
    >>> pool_privacy([a, b])[0]["rdp"]["values"]
    [0.3, 0.5]
    """
    pooled: dict[tuple, dict] = {}
    for entry in entries:
        key = (entry.get("stage"), entry.get("name"), entry.get("reads_private_data"), entry.get("dp"))
        if key not in pooled:
            pooled[key] = {**entry, "teachers": 0}
        held = pooled[key]
        held["teachers"] += 1
        held["seeded"] = bool(held.get("seeded")) or bool(entry.get("seeded"))  # one seeded teacher marks the pool
        rdp, other = held.get("rdp"), entry.get("rdp")
        if held.get("dp") and rdp and other:
            if list(rdp["orders"]) != list(other["orders"]):
                raise ValueError(f"RDP orders differ between teachers in stage {key[0]!r}; cannot take the max")
            held["rdp"] = {"orders": list(rdp["orders"]), "values": [max(x, y) for x, y in zip(rdp["values"], other["values"])]}
    return list(pooled.values())


def combine_command(
    run_dir: str = ".",
    percentage: float = 100.0,
    stratified: bool = True,
    start_id: Optional[int] = None,
    end_id: Optional[int] = None,
    seed: int = 42,
    name: str = "combined",
    out_dir: Optional[str] = None,
) -> Path:
    """Pool teachers' synthetic datasets, taking ``percentage`` % of each teacher's samples.

    Args:
        run_dir: the run directory.
        percentage: share of each teacher's samples to take, in (0, 100].
        stratified: take the share per label (keeps each teacher's class balance); else uniformly.
        start_id: first teacher (default: the lowest with a dataset).
        end_id: last teacher, inclusive (default: the highest with a dataset).
        seed: subsampling seed; teacher k's subset draws from (seed, k), so it does not depend on the range.
        name: file name prefix.
        out_dir: output folder (default {run_dir}/synthetic).
    """
    if not 0 < percentage <= 100:
        raise ValueError(f"percentage must lie in (0, 100], got {percentage}")
    if not name or "/" in name or "\\" in name:
        raise ValueError(f"name must be a plain file-name prefix, got {name!r}")
    if start_id is not None and end_id is not None and end_id < start_id:
        raise ValueError(f"end_id ({end_id}) must be >= start_id ({start_id})")
    root = Path(run_dir)
    done = finished_teachers(root)
    if not done:
        raise PateError("no teacher has a synthetic dataset; run the generate stage first.", root / "teachers")
    low = start_id if start_id is not None else done[0]
    high = end_id if end_id is not None else done[-1]
    chosen = [t for t in done if low <= t <= high]
    if not chosen:
        raise PateError(f"no teacher in {low}..{high} has a synthetic dataset; run the generate stage first.", root / "teachers")
    missing = [t for t in range(low, high + 1) if t not in done]
    if missing:
        log.warning("combine: teachers %s have no synthetic dataset and are left out", missing)
    images, labels, confidences, owners, sources, per_teacher = [], [], [], [], [], {}
    privacy_entries: list[dict] = []
    for teacher_id in chosen:
        data = load_synthetic(root, teacher_id)
        take = subsample(data.labels, percentage / 100, stratified, generator(seed, teacher_id, Stream.SHUFFLE))
        images.append(data.images[take])
        labels.append(data.labels[take])
        confidences.append(data.confidences[take])
        owners.append(torch.full((len(take),), teacher_id, dtype=torch.long))
        sources.append(take)
        privacy_entries += stage_entries(layout.vae_report_file(root, teacher_id), "generator")
        privacy_entries += stage_entries(layout.selection_report_file(root, teacher_id), "selection")
        per_teacher[str(teacher_id)] = {
            "available": len(data.labels), "taken": len(take),
            "samples_sha256": sha256_file(layout.synthetic_samples_file(root, teacher_id)),
        }
    samples = torch.cat(images).float().contiguous()  # (N, 1, 28, 28)
    label = torch.cat(labels)
    out = Path(out_dir) if out_dir is not None else layout.synthetic_dir(root)
    # the metadata is written last; remove the previous run's first, so an interruption never leaves it
    # describing (and vouching for the privacy of) samples it did not record
    (out / f"{name}_metadata.json").unlink(missing_ok=True)
    files = {
        "samples": save_torch(out / f"{name}_samples.pt", samples),
        "labels": write_csv(
            out / f"{name}_labels.csv", ["index", "label", "confidence"],
            [[i, int(c), f"{float(p):.6f}"] for i, (c, p) in enumerate(zip(label, torch.cat(confidences)))],
        ),
        "teacher_ids": write_csv(
            out / f"{name}_teacher_ids.csv", ["index", "teacher_id", "source_index"],
            [[i, int(t), int(s)] for i, (t, s) in enumerate(zip(torch.cat(owners), torch.cat(sources)))],
        ),
    }
    metadata = {
        "name": name,
        "num_samples": len(label),
        "num_teachers": len(chosen),
        "teacher_ids": chosen,
        "missing_teachers": missing,
        "percentage": percentage,
        "stratified": stratified,
        "seed": seed,
        "class_distribution": {str(c): int(n) for c, n in enumerate(torch.bincount(label, minlength=10).tolist())},
        "per_teacher": per_teacher,
        "privacy": {"stages": pool_privacy(privacy_entries)},
        "outputs": {key: {"file": path.name, "sha256": sha256_file(path)} for key, path in files.items()},
    }
    write_json(out / f"{name}_metadata.json", metadata)
    print(f"combined {len(label)} samples from {len(chosen)} teachers into {out}/{name}_*")
    return out
