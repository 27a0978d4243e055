"""Generator families and what each costs in privacy (the contract's "privacy" entries).

- ``per_teacher``: a VAE per shard, from scratch (the guide);
- ``public``: one VAE trained on a public prior (``font_digits``), used by every teacher as is;
- ``hybrid``: that public VAE fine-tuned per teacher on its shard.
Selection modes: ``teacher_filters`` (the teacher's classifier confidence, distance to its shard,
its shard's histogram: private, not DP) and ``pate`` (every candidate a query; PATE's noisy
threshold selects, at a cost the pate stage accounts; only public diversity filters here).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from torch import nn

from pate_lightning import layout
from pate_lightning.errors import PateError
from pate_lightning.io import load_state_dict, read_json
from pate_lightning.stacked.layers import load_member_state_dict

FAMILIES = ("per_teacher", "public", "hybrid")
SELECTION_MODES = ("teacher_filters", "pate")
PUBLIC_DATASETS = ("font_digits", "font_digits_small")  # data sets that hold no private record


def stage_label(stage: str, dataset: str) -> str:
    """The name a run's logs and TensorBoard give a stage: the public prior is ``teacher_vae`` on a public set.

    >>> stage_label("teacher_vae", "font_digits_small"), stage_label("teacher_vae", "mnist")
    ('public_prior', 'teacher_vae')
    """
    return "public_prior" if stage == "teacher_vae" and dataset in PUBLIC_DATASETS else stage


def load_public_vae(path: Optional[str], family: str, encoder: nn.Module, decoder: nn.Module, num_members: int) -> None:
    """Copy the public VAE's ``vae_full.pth`` into every member of ``encoder``/``decoder``."""
    if not path:
        raise ValueError(
            f"generator {family!r} needs public_vae: the public VAE's vae_full.pth, trained by "
            "`pate-lightning fit --config configs/generators/public_prior.yaml`"
        )
    state = load_state_dict(Path(path), "public VAE")
    parts = {"encoder": {}, "decoder": {}}
    for name, tensor in state.items():
        part, _, rest = name.partition(".")
        if part in parts:
            parts[part][rest] = tensor
    try:
        for k in range(num_members):
            load_member_state_dict(encoder, k, parts["encoder"])
            load_member_state_dict(decoder, k, parts["decoder"])
    except ValueError as error:
        raise PateError(
            f"the public VAE does not match this module's architecture/latent_dim/hidden_dims/conditional "
            f"settings ({error}); use the settings it was trained with.", path,
        ) from None


def generator_entry(family: str, dataset: str) -> dict:
    """The generator stage's "privacy" entry for ``training_report.json``.

    >>> generator_entry("public", "mnist")["reads_private_data"]
    False
    >>> generator_entry("hybrid", "mnist")["reads_private_data"]
    True
    """
    private = family != "public" and dataset not in PUBLIC_DATASETS
    notes = {
        "per_teacher": "VAE trained on the teacher's shard without DP",
        "public": "public VAE (trained on a public prior such as font_digits); the shard is never read",
        "hybrid": "public VAE fine-tuned on the teacher's shard without DP",
    }
    note = notes[family] if private or family == "public" else f"VAE trained on the public {dataset} set only"
    return {"stage": "generator", "name": family, "reads_private_data": private, "dp": False, "rdp": None, "note": note}


def prior_entry(public_vae: str | Path) -> dict:
    """The public VAE's own privacy record (its ``training_report.json``), as the ledger's ``public_prior`` stage.

    A "public" VAE trained on MNIST has read every shard without DP; the families that start from it inherit
    that, so its record travels with theirs. No report beside the weights: what it read is unknown, so private.
    """
    report_file = layout.prior_report_file(Path(public_vae))
    report = read_json(report_file) if report_file.is_file() else None
    entry = report.get("privacy") if isinstance(report, dict) else None
    if not isinstance(entry, dict):
        return {"stage": "public_prior", "name": "unknown", "reads_private_data": True, "dp": False, "rdp": None,
                "note": f"no privacy record in {report_file}: what the public VAE was trained on is unknown"}
    return {**entry, "stage": "public_prior", "note": f"the public VAE's own training: {entry.get('note', '')}"}


def selection_entry(mode: str, conditional: bool) -> dict:
    """The selection stage's "privacy" entry for ``selection_report.json``.

    >>> selection_entry("pate", True)["reads_private_data"]
    False
    """
    if mode == "pate":
        note = "no private filter: every candidate (after public diversity filtering) is a PATE query"
        return {"stage": "selection", "name": mode, "reads_private_data": False, "dp": False, "rdp": None, "note": note}
    note = "teacher classifier confidence, distance to the shard and the shard's class histogram (not DP)"
    if conditional:
        note += "; the teacher must agree with the requested class"
    return {"stage": "selection", "name": mode, "reads_private_data": True, "dp": False, "rdp": None, "note": note}
