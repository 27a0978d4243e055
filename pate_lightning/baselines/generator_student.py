"""``pate-lightning generator_student``: a student trained only on a conditional generator's samples, no PATE.

The DPDM / FETA-Pro protocol: the generator draws ``per_class`` images of every class, each labelled with the
class it was asked for, and the student learns from those alone (optionally after public pretraining). With the
union DP generator the only stage that reads private data is its DP-SGD, so the student's end-to-end epsilon is
the generator's, read from the privacy record beside its ``vae_full.pth`` through the same ledger the ``pate``
stage uses; the table can then show what PATE adds on top. Writes ``generator_student/report.json`` with the
privacy fields of ``pate/report.json``.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any, Optional

from pate_lightning import layout
from pate_lightning.generators.families import prior_entry
from pate_lightning.generators.union_dp import UnionCVAE, class_conditional_samples
from pate_lightning.io import load_state_dict, sha256_file, write_json
from pate_lightning.pate.queries import holdout_set
from pate_lightning.pate.student_pretrain import public_pretraining_set
from pate_lightning.pate.student_training import StudentSettings, train_student
from pate_lightning.privacy import NOT_PRIVATE, end_to_end_privacy
from pate_lightning.seeding import Stream, generator


def generator_student_command(
    run_dir: str = ".",
    data_dir: str = "data",
    dataset: str = "mnist",
    protocol: str = "half",
    vae: Optional[str] = None,
    per_class: int = 1000,
    student: StudentSettings = StudentSettings(architecture="small_cnn", epochs=5, val_fraction=0.0),
    delta: float = 1e-5,
    conversion: str = "balle2020",
    accelerator: str = "auto",
    seed: Optional[int] = None,
) -> dict[str, Any]:
    """Train the student on the generator's class-conditional samples labelled with their classes; write its report.

    Args:
        run_dir: the run directory; the report goes to {run_dir}/generator_student/report.json.
        data_dir: the prepared MNIST folder (the student's test set) and the public pretraining set.
        dataset: the MNIST-family dataset whose test set scores the student.
        protocol: the student's test set, as ``pate``: half (last 5,000 MNIST test images) or papers (last 1,000).
        vae: the generator's ``vae_full.pth`` (a conditional MLP VAE with its training_report.json beside it);
            default the union DP generator's, ``{run_dir}/union_vae/teacher_vaes/teacher_0/vae_full.pth``.
        per_class: samples of each class the student trains on.
        student: the student's settings (architecture, epochs, public pretraining, ...).
        delta: the delta of the reported (epsilon, delta).
        conversion: RDP -> (epsilon, delta): balle2020 (default) or classic.
        accelerator: auto, cpu, gpu, cuda or mps.
        seed: the samples' latents and the student's initialisation (no privacy noise is drawn here); null: fresh.
    """
    started = time.perf_counter()
    student.check()
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}")
    root = Path(run_dir)
    path = Path(vae) if vae else layout.vae_full_file(layout.union_generator_dir(root), 0)
    model = UnionCVAE.from_vae_full(load_state_dict(path, "generator"))
    draw_seed = seed if seed is not None else secrets.randbits(31)
    images, labels = class_conditional_samples(model, per_class, generator(draw_seed, 0, Stream.LATENT))
    test = holdout_set(data_dir, protocol, dataset)
    public = None if student.pretrain == "none" else public_pretraining_set(student.pretrain, data_dir)
    with_labels = train_student(images, labels, test, student, accelerator, draw_seed, root / "generator_student",
                                public=public, test_set=f"MNIST test, protocol {protocol}")
    generator_record = prior_entry(path)
    privacy = end_to_end_privacy("synthetic", [generator_record], [], delta, conversion)
    seeded = bool(privacy["seeded_by"])
    run = {
        "route": "generator_student",
        "protocol": protocol,
        "generator": {"path": str(path), "sha256": sha256_file(path), "per_class": per_class},
        "student": {
            "test_accuracy": with_labels["test_accuracy"], "test_images": len(test[1]),
            "public_only_accuracy": (with_labels["pretraining"] or {}).get("test_accuracy"),
            "settings": {k: with_labels[k] for k in StudentSettings.__dataclass_fields__},
        },
        "privacy": {
            "private": not seeded, "delta": delta, "conversion": conversion,
            # no label comes from the teachers: the generator's classes are the labels, so no label epsilon
            **{**privacy, "epsilon_labels": None, "order_labels": None},
        },
        "seconds": round(time.perf_counter() - started, 2),
    }
    write_json(layout.generator_student_report_file(root), {"runs": [run]})
    epsilon = privacy["epsilon_end_to_end"]
    print(f"generator_student: {len(labels)} samples, student {100 * run['student']['test_accuracy']:.2f}%, "
          f"end-to-end epsilon {'unbounded' if epsilon is None else f'{epsilon:.3f}'} at delta {delta:g} "
          f"({conversion}, scope {privacy['privacy_scope']})" + (f"; {NOT_PRIVATE} (seeded generator noise)" if seeded else ""))
    return run
