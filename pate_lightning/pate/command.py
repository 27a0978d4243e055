"""``pate-lightning pate``: votes -> noisy aggregation -> RDP accounting -> student -> ``pate/report.json``."""

from __future__ import annotations

import logging
import secrets
import time
from pathlib import Path
from typing import Any, Optional

import torch

from pate_lightning import layout
from pate_lightning.io import move_if_absent
from pate_lightning.pate.aggregate import (Accounting, Mechanism, account, aggregate, check_conversion, check_delta, plurality,
                                          refused_release, release_settings)
from pate_lightning.pate.publish import diagnostics_entry, privacy_record, read_privacy_stages
from pate_lightning.pate.queries import (QUERY_SOURCES, QuerySet, holdout_set, load_queries, protocol_split,
                                         select_queries, votes_name)
from pate_lightning.pate.report import format_table, write_report
from pate_lightning.pate.student_pretrain import public_pretraining_set
from pate_lightning.pate.student_training import StudentSettings, train_student
from pate_lightning.pate.voting import cached_votes, check_teachers, find_teachers
from pate_lightning.privacy import NoiseSource, ReleaseSettings, end_to_end_privacy, noise_source
from pate_lightning.classifiers.loading import NORMALIZATIONS

log = logging.getLogger(__name__)

NUM_CLASSES = 10
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")


def vote_device(accelerator: str) -> torch.device:
    if accelerator not in ACCELERATORS:
        raise ValueError(f"unknown accelerator {accelerator!r}; choose one of {ACCELERATORS}")
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("mps" if accelerator == "mps" else "cpu")


def _rate(hits: torch.Tensor) -> Optional[float]:
    return float(hits.double().mean()) if hits.numel() else None


def pate_command(
    run_dir: str = ".",
    data_dir: str = "data",
    dataset: str = "mnist",
    teachers_dir: str = layout.TRAINED_NETS,
    teacher_ids: Optional[list[int]] = None,
    normalization: Optional[str] = None,
    query_source: str = "mnist_test",
    protocol: str = "half",
    synthetic_samples: Optional[str] = None,
    num_queries: Optional[int] = 1000,
    mechanism: str = "confident_gnmax",
    gamma: float = 0.05,
    sigma: float = 40.0,
    threshold: float = 200.0,
    sigma1: float = 150.0,
    sigma2: float = 40.0,
    delta: float = 1e-5,
    conversion: str = "balle2020",
    release: ReleaseSettings = ReleaseSettings(),
    student: StudentSettings = StudentSettings(),
    teacher_chunk: int = 25,
    vote_batch_size: int = 128,
    accelerator: str = "auto",
    seed: Optional[int] = None,
    diagnostics: bool = False,
    wide: bool = False,
    settings_chosen_on_private_data: Optional[str] = None,
) -> dict[str, Any]:
    """Label queries by noisy teacher votes, account their privacy, train a student, write pate/report.json.

    Args:
        run_dir: the run directory; outputs go to {run_dir}/pate.
        data_dir: the prepared MNIST folder (test set: first half queries, second half student evaluation).
        dataset: the MNIST-family dataset under data_dir whose test set is queried and held out.
        teachers_dir: the teacher classifiers, {teachers_dir}/{id}/model.pth (relative to run_dir unless absolute).
        teacher_ids: teachers that vote (default: every teacher found).
        normalization: classifier input normalization, mnist or half (default: what each teacher recorded).
        query_source: mnist_test (a prefix of the MNIST test set) or synthetic (the combined dataset).
        protocol: half (queries from the first 5,000 MNIST test images, student tested on the last 5,000) or
            papers (first 9,000 / last 1,000, as Papernot et al. 2017 and 2018).
        synthetic_samples: the combined samples (default {run_dir}/synthetic/combined_samples.pt).
        num_queries: queries asked (mnist_test: the first ones; synthetic: a seeded random subset); null: all.
        mechanism: lnmax, gnmax or confident_gnmax.
        gamma: LNMax inverse noise scale.
        sigma: GNMax noise std.
        threshold: Confident-GNMax threshold T on the noisy max vote.
        sigma1: Confident-GNMax threshold-check noise std.
        sigma2: Confident-GNMax answer noise std.
        delta: the delta of the reported (epsilon, delta), in (0, 1).
        conversion: RDP -> (epsilon, delta): balle2020 (Balle et al. 2020, as dp-accounting; default) or classic.
        release: the smooth-sensitivity release's order, beta and sigma_ss, fixed before the votes (null: the rule).
        student: the student's training settings.
        teacher_chunk: teachers loaded at a time while voting (bounds memory).
        vote_batch_size: images per teacher forward pass while voting.
        accelerator: auto, cpu, gpu, cuda or mps (voting and student).
        seed: null (default): privacy noise from OS entropy, recorded nowhere. An int seeds the noise, the release
            draw, the synthetic query subset and the student: reproducible, and every report says NOT PRIVATE.
        diagnostics: also print the columns computed from the un-noised votes (marked [diag], not for release);
            they are written to {run_dir}/private/pate_diagnostics.json either way.
        wide: print the table one row per run with every column (wider than 120 characters).
        settings_chosen_on_private_data: null, or which settings of the run (generator, queries, student) were
            chosen by a non-DP look at private data, and how. The report carries it and the scope becomes
            end_to_end_settings_tuned_on_private_data, never end_to_end (docs/privacy.md).
    """
    started = time.perf_counter()
    # every setting and input is checked before anything is written
    chosen = Mechanism(mechanism, gamma, sigma, threshold, sigma1, sigma2).check()
    check_delta(delta)
    check_conversion(conversion)
    if release.order is not None:  # a null order is the rule's, fixed below once the queries are counted
        release.resolved()
    student.check()
    noise = noise_source(seed)
    protocol_split(1, protocol)  # an unknown protocol fails here, before anything is read
    if query_source not in QUERY_SOURCES:
        raise ValueError(f"unknown query_source {query_source!r}; choose one of {QUERY_SOURCES}")
    if num_queries is not None and (isinstance(num_queries, bool) or num_queries < 1):
        raise ValueError(f"num_queries must be >= 1 (or null for all), got {num_queries!r}")
    if normalization is not None and normalization not in NORMALIZATIONS:
        raise ValueError(f"unknown normalization {normalization!r}; choose one of {sorted(NORMALIZATIONS)} or null")
    if teacher_chunk < 1 or vote_batch_size < 1:
        raise ValueError(f"teacher_chunk and vote_batch_size must be >= 1, got {teacher_chunk}, {vote_batch_size}")
    device = vote_device(accelerator)
    root = Path(run_dir)
    teachers_root = layout.classifiers_root(root, teachers_dir)  # an absolute teachers_dir stays as it is
    ids = check_teachers(teachers_root, teacher_ids if teacher_ids is not None else find_teachers(teachers_root))
    chosen.check(num_teachers=len(ids))
    combined = layout.combined_file(layout.synthetic_dir(root), "combined", "samples.pt")
    samples = Path(synthetic_samples) if synthetic_samples else combined
    queries = load_queries(query_source, data_dir, samples, protocol, dataset)
    stages = read_privacy_stages(samples) if query_source == "synthetic" else None
    # the query subset and the student's initialisation are not privacy noise: a fresh seed is recorded for them
    sampling_seed = seed if seed is not None else secrets.randbits(31)
    asked = select_queries(queries, num_queries, sampling_seed)  # (Q,)
    # the release's order (rule or setting) and conditions C5/C6: from settings and counts, before any vote is read
    fixed = release_settings(chosen, release, len(asked), NUM_CLASSES, len(ids), delta, conversion)
    refusal = refused_release(chosen, fixed, NUM_CLASSES, len(ids))
    if refusal is not None:
        log.warning("pate: %s", refusal)
    test = holdout_set(data_dir, protocol, dataset)
    public = None if student.pretrain == "none" else public_pretraining_set(student.pretrain, data_dir)
    votes_path = layout.votes_file(root, votes_name(query_source, protocol))
    # runs before the private/ folder kept the raw votes and diagnostics beside report.json: move them there
    move_if_absent(layout.legacy_votes_file(root, votes_name(query_source, protocol)), votes_path)
    move_if_absent(layout.legacy_pate_diagnostics_file(root), layout.pate_diagnostics_file(root))

    result = cached_votes(votes_path, teachers_root, ids, queries.images, asked,
                          normalization, teacher_chunk, vote_batch_size, device)
    votes = result.votes  # (Q, 10)
    run, labels, answered, accounting = label_queries(queries, asked, votes, ids, chosen, noise, delta, conversion,
                                                      release, stages, sampling_seed, protocol, student.description,
                                                      settings_chosen_on_private_data)
    private_entry = diagnostics_entry(run, accounting.diagnostics, *vote_diagnostics(queries, asked, votes, labels, answered))
    run["votes"] = {  # the cache's path is not named here: report.json never points into private/
        "rows_counted": result.computed,
        "rows_from_cache": len(asked) - result.computed,
        "seconds": round(result.seconds, 3),
        "teacher_images_per_second": result.teacher_images_per_second,
        "device": str(device),
    }
    if answered.any():
        images = queries.images[asked][answered]
        # the unlabeled pool is every query image, answered or not, without any label: public (mnist_test) or
        # already paid for by the stages that made it (synthetic); the supervised student ignores it
        run["student"] = train_student(images, labels[answered], test, student, accelerator, sampling_seed,
                                       layout.pate_dir(root), unlabeled=queries.images,
                                       test_set=f"the last {len(test[0])} MNIST test images (never queried)",
                                       public=public, logs=layout.logs_root(root))
    else:
        run["student"] = None
        log.warning("pate: no query was answered (lower threshold or ask more queries); no student trained")
    run["seconds"] = round(time.perf_counter() - started, 2)
    report, kept = write_report(layout.pate_report_file(root), layout.pate_diagnostics_file(root), run, private_entry)
    print(format_table(report, kept if diagnostics else None, wide=wide))
    return run


def label_queries(
    queries: QuerySet, asked: torch.Tensor, votes: torch.Tensor, ids: list[int], chosen: Mechanism,
    noise: NoiseSource, delta: float, conversion: str, release: ReleaseSettings, stages: Optional[list[Any]],
    sampling_seed: int, protocol: str, student_method: str, settings_chosen_on_private_data: Optional[str] = None,
) -> tuple[dict[str, Any], torch.Tensor, torch.Tensor, Accounting]:
    """Noisy aggregation of ``votes`` (Q, 10) on the asked queries, its accounting and the publishable run
    record; also the labels (Q,), the answered mask (Q,) and the accounting (its diagnostics are not in the record).

    ``stages``: the synthetic pool's privacy stages (None for public queries), composed into the ledger.
    """
    labels, answered = aggregate(votes, chosen, noise.votes, len(ids))  # (Q,), (Q,)
    accounting = account(votes, answered, chosen, delta, noise.release, release, conversion)
    ledger = end_to_end_privacy(queries.source, stages, accounting.ledger_steps, delta, conversion,
                                settings_chosen_on_private_data=settings_chosen_on_private_data)
    run = public_run(queries, asked, ids, chosen, labels, answered, noise, accounting, ledger, sampling_seed,
                     protocol, student_method)
    return run, labels, answered, accounting


def public_run(
    queries: QuerySet, asked: torch.Tensor, ids: list[int], chosen: Mechanism, labels: torch.Tensor,
    answered: torch.Tensor, noise: NoiseSource, accounting: Accounting, ledger: dict[str, Any], sampling_seed: int,
    protocol: str, student_method: str,
) -> dict[str, Any]:
    """The report entry's publishable fields: settings, counts, noisy labels' statistics, the privacy block."""
    run: dict[str, Any] = {
        "query_source": queries.source,
        "protocol": protocol,
        "student_method": student_method,
        "query_file": str(queries.path),
        "mechanism": chosen.name,
        "parameters": chosen.parameters,
        "mechanism_description": chosen.describe(),
        "sampling_seed": sampling_seed,
        "num_teachers": len(ids),
        "teacher_ids": ids,
        "queries_available": len(queries),
        "queries_asked": len(asked),
        "queries_answered": int(answered.sum()),
        "answered_label_counts": torch.bincount(labels[answered], minlength=NUM_CLASSES).tolist(),
        # noisy (DP) labels against public truth: post-processing, publishable
        "label_accuracy": None,
        "privacy": privacy_record(noise.describe(), accounting.public, ledger),
    }
    if queries.truth is not None:
        truth = queries.truth[asked]
        run["label_accuracy"] = _rate(labels[answered] == truth[answered])
    return run


def vote_diagnostics(
    queries: QuerySet, asked: torch.Tensor, votes: torch.Tensor, labels: torch.Tensor, answered: torch.Tensor
) -> tuple[Optional[float], Optional[float]]:
    """The plurality's accuracy (un-noised votes) and agreement with the generating teachers' own labels
    (made by non-private classifiers): diagnostics, never released."""
    plurality_accuracy = generator_agreement = None
    if queries.truth is not None:
        plurality_accuracy = _rate(plurality(votes) == queries.truth[asked])
    if queries.generator_labels is not None:
        own = queries.generator_labels[asked]
        generator_agreement = _rate(labels[answered] == own[answered])
    return plurality_accuracy, generator_agreement
