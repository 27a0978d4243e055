"""What do the repeated student runs add up to? Their tables: docs/results/student_repeats.{md,json}.

Reads the summaries ``experiments/student_repeats.py`` wrote (GPU and CPU) and, optionally, ``pate/report.json``
files of ``pate-lightning pate`` runs (experiments/student_rows_pretrain.sh) whose row and student settings match
one of the repeats' variants. Per row and variant: the number of runs, the test accuracy's mean, standard
deviation and range, the selection-set accuracy (query-pool images 8,000-8,999, never asked), answered
queries, label accuracy, epsilons and times. The chosen variant of each row is the one with the best mean
selection accuracy, so the test images do not pick it; where a row has variants whose unlabeled pool leaves
the selection images out (``repeats.SELECTION_HELD_OUT``), only those compete, since FixMatch's fit on images
it trains on without labels overstates the selection score of longer training.

Usage:
    python -m experiments.student_repeats_table --summaries runs/student_repeats_gpu/summary_call1.json \
        runs/student_repeats_cpu/summary.json --reports runs/student4/*/pate/report.json --out docs/results
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Optional

import numpy as np

from pate_lightning.io import read_json, write_json, write_text
from pate_lightning.pate.student_training import StudentSettings
from pate_lightning.privacy import (RELEASED_MECHANISMS, PrivacyLedger, RDPAccountant, ReleaseSettings,
                                    release_rdp_curve)

from experiments import student_repeats as repeats

RUNS_RELEASE_ORDER = 16.0  # the release order every committed run used
TARGETS = {"a": 0.980, "b": 0.985}  # the anchors (PATE-G 2017, Papernot et al. 2018)


def match(record: dict[str, Any]) -> Optional[tuple[str, str]]:
    """(row, variant) of a ``pate`` report entry whose mechanism, queries and student settings are a repeat's."""
    student = record.get("student") or {}
    row = next((name for name, (mechanism, asked) in repeats.ROWS.items()
                if record.get("mechanism_description") == mechanism.describe() and record.get("queries_asked") == asked
                and record.get("protocol") == repeats.PROTOCOL), None)
    # a setting a report lacks predates it: it ran at the default
    recorded = {k: student.get(k, default) for k, default in asdict(StudentSettings()).items()}
    # the CLI's unlabeled pool is the whole query pool, selection images included
    variant = next((name for name, (settings, _) in repeats.VARIANTS.items()
                    if asdict(settings) == recorded and name not in repeats.SELECTION_HELD_OUT), None)
    return (row, variant) if row and variant else None


def flat(row: str, variant: str, source: str, device: str, run: dict[str, Any]) -> dict[str, Any]:
    """One run's figures for the tables."""
    student, privacy = run["student"], run["privacy"]
    return {
        "row": row, "variant": variant, "source": source, "device": device,
        "answered": run["queries_answered"], "label_accuracy": run["label_accuracy"],
        "epsilon_data_independent": privacy["epsilon_data_independent"],
        "epsilon_released": privacy.get("epsilon_data_dependent_released"),
        "epsilon_labels": privacy["epsilon_labels"],
        "public_only": (student.get("pretraining") or {}).get("test_accuracy"),
        "test": student["test_accuracy"], "selection": student.get("selection_accuracy"),
        # without test-time views the single-view score is the test score (runs before the field existed)
        "test_single_view": student.get("test_accuracy_single_view", student["test_accuracy"]),
        "selection_single_view": student.get("selection_accuracy_single_view", student.get("selection_accuracy")),
        "test_per_class": student["test_accuracy_per_class"], "seconds": run["seconds"],
        "wrong_labels_trained": wrong_labels_trained(run),
    }


def wrong_labels_trained(run: dict[str, Any]) -> Optional[int]:
    """Answered labels that were wrong (by the public truth: a diagnostic) and that the student trained on, i.e.
    not dropped by its label filter; None where the run did not record which dropped labels were wrong, and for
    the runs trained on true labels."""
    student = run["student"]
    dropped_wrong = student.get("labels_dropped_wrong", 0 if not student.get("label_filter") else None)
    if dropped_wrong is None or student.get("diagnostic"):  # a true-label run trained on no wrong label
        return None
    return round(run["queries_answered"] * (1 - run["label_accuracy"])) - dropped_wrong


def collect(summaries: list[Path], reports: list[Path], previous: Optional[Path] = None) -> list[dict[str, Any]]:
    """Every run's figures: the summaries', the matching reports' and, with ``previous``, the runs of an earlier
    ``student_repeats.json`` (flat already), so a table can grow after the raw run files are gone."""
    runs = []
    for run in read_json(previous)["runs"] if previous else []:
        runs.append({**run, "test_single_view": run.get("test_single_view", run["test"]),
                     "selection_single_view": run.get("selection_single_view", run["selection"])})
    for path in summaries:
        summary = read_json(path)
        source = f"student_repeats.py, {summary['workers']} workers x {summary['threads_per_worker']} thread(s)"
        # the device with how it was shared, since a run's seconds depend on both
        runs += [flat(r["row"], r["variant"], source, _shared(r, summary), r["run"]) for r in summary["runs"]]
    for path in reports:
        for record in read_json(path).get("runs", []):
            found = match(record)
            if found:
                runs.append(flat(*found, "pate CLI, one run at a time", "CPU, pate CLI", record))
    return runs


def _shared(record: dict[str, Any], summary: dict[str, Any]) -> str:
    """The device and how many workers shared it for this run (the summary's count for runs that predate the
    per-run record: the last process's, which may not be theirs)."""
    workers = record.get("workers", summary["workers"])
    return f"{record['device'].split(' (')[0]}, {workers} worker{'s' if workers != 1 else ''}"


def run_curve(row: str) -> np.ndarray:
    """One run's a-priori RDP on the ledger's grid: the votes (every asked query) and, where made, the release."""
    mechanism, num_queries = repeats.ROWS[row]
    accountant = RDPAccountant()
    answered = {"answered": [True] * num_queries} if mechanism.name == "confident_gnmax" else {}  # unused a priori
    accountant.step(mechanism=mechanism.name, num_queries=num_queries, **mechanism.parameters, **answered)
    curve = accountant.rdp_data_independent
    if mechanism.name in RELEASED_MECHANISMS:
        fixed = ReleaseSettings(order=RUNS_RELEASE_ORDER).resolved()
        curve = curve + release_rdp_curve(fixed.beta, fixed.sigma_ss, accountant.orders)
    return curve


def composed_epsilon(row: str, runs: int) -> float:
    """The epsilon of ``runs`` fresh-noise releases on the same teachers' votes: the ledger composes the runs'
    curves sequentially (every run reads the same records) and converts once."""
    ledger = PrivacyLedger()
    for index in range(runs):
        ledger.step(stage="pate", name=f"row ({row}) run {index + 1}", rdp=run_curve(row))
    return ledger.get_epsilon(repeats.DELTA, repeats.CONVERSION)["epsilon"]


def _mean(values: list[Optional[float]]) -> Optional[float]:
    present = [v for v in values if v is not None]
    return statistics.mean(present) if present else None


def groups(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Statistics per (row, variant), every source pooled."""
    out = []
    for row in sorted({r["row"] for r in runs}):
        for variant in repeats.VARIANTS:
            chosen = [r for r in runs if r["row"] == row and r["variant"] == variant]
            if not chosen:
                continue
            tests = [r["test"] for r in chosen]
            released = [r["epsilon_released"] for r in chosen if r["epsilon_released"] is not None]
            out.append({
                "row": row, "variant": variant, "description": describe(repeats.VARIANTS[variant][0]),
                "selection_held_out": variant in repeats.SELECTION_HELD_OUT,
                "true_labels": variant in repeats.TRUE_LABELS,
                "runs": len(chosen), "runs_by_device": {d: sum(r["device"] == d for r in chosen)
                                                        for d in sorted({r["device"] for r in chosen})},
                "test_mean": statistics.mean(tests), "test_sd": statistics.stdev(tests) if len(tests) > 1 else None,
                "test_min": min(tests), "test_max": max(tests),
                "selection_mean": _mean([r["selection"] for r in chosen]),
                "selection_runs": sum(r["selection"] is not None for r in chosen),
                "test_single_view_mean": statistics.mean(r["test_single_view"] for r in chosen),
                "selection_single_view_mean": _mean([r["selection_single_view"] for r in chosen]),
                "answered_mean": statistics.mean(r["answered"] for r in chosen),
                "label_accuracy_mean": _mean([r["label_accuracy"] for r in chosen]),
                "epsilon_data_independent": chosen[0]["epsilon_data_independent"],
                "epsilon_labels": chosen[0]["epsilon_labels"],
                # a mean over K runs is a function of K releases of the same votes: it costs all K
                "epsilon_labels_all_runs_composed": composed_epsilon(row, len(chosen)),
                "epsilon_released_max": max(released) if released else None,
                "epsilon_released_mean": _mean(released),
                "public_only_mean": _mean([r["public_only"] for r in chosen]),
                "test_mean_by_device": {d: statistics.mean(r["test"] for r in chosen if r["device"] == d)
                                        for d in sorted({r["device"] for r in chosen})},
                "seconds_by_device": {d: statistics.mean(r["seconds"] for r in chosen if r["device"] == d)
                                      for d in sorted({r["device"] for r in chosen})},
            })
    return out


def label_test_correlation(runs: list[dict[str, Any]], min_epochs: int = 120) -> dict[str, dict[str, Any]]:
    """Per row, Pearson's r between the answered labels' accuracy and the test accuracy over FixMatch runs of
    at least ``min_epochs`` epochs (one pass for all views) with every answered label kept: how much of a row's spread the label noise
    explains."""
    out = {}
    for row in sorted({r["row"] for r in runs}):
        chosen = [r for r in runs if r["row"] == row and _fixmatch_kept(r["variant"], min_epochs)]
        pairs = [(r["label_accuracy"], r["test"]) for r in chosen]
        if len(pairs) > 2 and len({p[0] for p in pairs}) > 1:
            out[row] = {"runs": len(pairs), "r": statistics.correlation(*zip(*pairs)),
                        "variants": sorted({r["variant"] for r in chosen})}
    return out


def wrong_labels_test_correlation(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per row, Pearson's r between the wrong labels a run trained on and its test accuracy, over the runs of the
    120-epoch FixMatch variants that differ only in their label filter, EMA decay and unlabeled pool: whether the
    wrong labels left after filtering still explain a row's spread."""
    out = {}
    for row in sorted({r["row"] for r in runs}):
        pairs = [(r["wrong_labels_trained"], r["test"]) for r in runs
                 if r["row"] == row and _fix120_family(r["variant"]) and r.get("wrong_labels_trained") is not None]
        if len(pairs) > 2 and len({p[0] for p in pairs}) > 1:
            out[row] = {"runs": len(pairs), "r": statistics.correlation(*zip(*pairs)),
                        "wrong_labels_trained_range": [min(p[0] for p in pairs), max(p[0] for p in pairs)]}
    return out


def _fix120_family(variant: str) -> bool:
    if variant in repeats.TRUE_LABELS:
        return False
    base = replace(repeats.FIXMATCH, epochs=120)
    return replace(repeats.VARIANTS[variant][0], label_filter=0.0, ema_decay=base.ema_decay) == base


def _fixmatch_kept(variant: str, min_epochs: int) -> bool:
    settings = repeats.VARIANTS[variant][0]
    return (settings.method == "fixmatch" and settings.epochs >= min_epochs and not settings.label_filter
            and not settings.separate_weak_pass and variant not in repeats.TRUE_LABELS)


def describe(settings: StudentSettings) -> str:
    extra = f", EMA {settings.ema_decay}" if settings.method == "fixmatch" else ", affine augmentation"
    extra += ", weak views in their own pass" if settings.separate_weak_pass else ""
    extra += ", whole-pixel weak shifts" if settings.weak == "crop" else ""
    extra += f", labels the public model contradicts at {settings.label_filter:g} dropped" if settings.label_filter else ""
    extra += f", elastic distortion on {settings.elastic:.0%} of strong views" if settings.elastic else ""
    extra += f", weight decay {settings.weight_decay:g}" if settings.weight_decay else ""
    extra += f"; tested on the mean of {settings.test_views} weak views" if settings.test_views else ""
    return (f"{settings.description} {settings.pretrain_epochs}+{settings.epochs} ep, lr {settings.lr:g}{extra}")


def chosen_variants(table: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per row, the variant with the best mean selection accuracy (ties: the first listed), among the variants
    whose unlabeled pool leaves the selection set out where the row has any (their selection score is unbiased);
    never a variant trained on true labels.

    >>> table = [{"row": "b", "variant": "long", "selection_mean": 0.995, "selection_held_out": False},
    ...          {"row": "b", "variant": "x", "selection_mean": 0.990, "selection_held_out": True},
    ...          {"row": "b", "variant": "y", "selection_mean": 0.992, "selection_held_out": True},
    ...          {"row": "a", "variant": "z", "selection_mean": 0.99, "selection_held_out": False}]
    >>> {row: g["variant"] for row, g in chosen_variants(table).items()}
    {'b': 'y', 'a': 'z'}
    """
    table = [g for g in table if not g.get("true_labels")]  # a diagnostic of the ceiling, not a PATE student
    unbiased = {g["row"] for g in table if g["selection_held_out"] and g["selection_mean"] is not None}
    best: dict[str, dict[str, Any]] = {}
    for group in table:
        if group["selection_mean"] is None or (group["row"] in unbiased and not group["selection_held_out"]):
            continue
        current = best.get(group["row"])
        if current is None or group["selection_mean"] > current["selection_mean"]:
            best[group["row"]] = group
    return best


def _pct(value: Optional[float], digits: int = 2) -> str:
    return "–" if value is None else f"{100 * value:.{digits}f}%"


def markdown(table: list[dict[str, Any]], best: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| row | variant | student | runs | test mean ± sd | range | selection mean | one view: test / selection "
        "| answered | label acc. | ε labels (a priori), one run | ε of the runs composed | ε released max "
        "| public-only | s per run |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for g in table:
        sd = "" if g["test_sd"] is None else f" ± {100 * g['test_sd']:.2f}"
        released = "–" if g["epsilon_released_max"] is None else f"{g['epsilon_released_max']:.2f}"
        mark = " (chosen)" if best.get(g["row"]) is g else ""
        mark += " †" if g["selection_held_out"] else ""
        mark += " ‡" if g.get("true_labels") else ""
        seconds = "; ".join(f"{s:.0f} ({d})" for d, s in g["seconds_by_device"].items())
        views = repeats.VARIANTS[g["variant"]][0].test_views
        one_view = (f"{_pct(g['test_single_view_mean'])} / {_pct(g['selection_single_view_mean'])}" if views
                    else "(no test views)")
        lines.append(
            f"| ({g['row']}) | `{g['variant']}`{mark} | {g['description']} | {g['runs']} "
            f"| **{_pct(g['test_mean'])}**{sd} | {_pct(g['test_min'], 1)}–{_pct(g['test_max'], 1)} "
            f"| {_pct(g['selection_mean'])} ({g['selection_runs']}) | {one_view} | {g['answered_mean']:.0f} "
            f"| {_pct(g['label_accuracy_mean'], 1)} | {g['epsilon_labels']:.2f} "
            f"| {g['epsilon_labels_all_runs_composed']:.2f} | {released} "
            f"| {_pct(g['public_only_mean'], 1)} | {seconds} |")
    start, stop = repeats.SELECTION
    lines += ["", "ε labels (a priori), one run: the guarantee of one run (one release of the noisy labels). Every "
              "run of a row is a fresh-noise release on the same teachers' votes, so a figure over K runs (a mean, "
              "a range) is covered only by the K releases composed: the ledger adds the runs' a-priori RDP curves "
              f"(votes and release) and converts once (δ {repeats.DELTA:g}, {repeats.CONVERSION}).",
              "", f"† FixMatch's unlabeled pool leaves the selection images (query pool {start:,}-{stop - 1:,}) out: "
              "an unbiased selection score; where a row has such variants, the choice is among them alone.",
              "", "‡ Diagnostic, not a PATE result: trained on the answered queries' true labels (public MNIST test "
              "labels) in place of the released ones, to measure the student's ceiling; never chosen. Its label "
              "accuracy and ε are those of the released labels it did not train on.",
              "", "| row | chosen by the selection set | runs | test mean | ε one run | ε of the runs composed | target "
              "| met |", "|---|---|---|---|---|---|---|---|"]
    for row, g in sorted(best.items()):
        lines.append(f"| ({row}) | `{g['variant']}` | {g['runs']} | {_pct(g['test_mean'])} | {g['epsilon_labels']:.2f} "
                     f"| {g['epsilon_labels_all_runs_composed']:.2f} | {_pct(TARGETS[row], 1)} "
                     f"| {'yes' if g['test_mean'] >= TARGETS[row] else 'no'} |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--summaries", nargs="*", type=Path, default=[])
    parser.add_argument("--reports", nargs="*", type=Path, default=[])
    parser.add_argument("--previous", type=Path, default=None,
                        help="an earlier student_repeats.json whose runs the table keeps (e.g. docs/results/...)")
    parser.add_argument("--out", type=Path, default=Path("docs/results"))
    args = parser.parse_args(argv)
    runs = collect(args.summaries, args.reports, args.previous)
    table = groups(runs)
    best = chosen_variants(table)
    write_json(args.out / "student_repeats.json", {
        "note": "test: the last 1,000 MNIST test images; selection: query-pool images 8,000-8,999 (never asked), "
                "whose public labels choose the variant, among the variants whose unlabeled pool leaves them out "
                "(selection_held_out) where a row has any; delta 1e-5, balle2020, scope labels; noise from OS entropy",
        "groups": table, "chosen": {row: g["variant"] for row, g in best.items()},
        "label_test_correlation": label_test_correlation(runs),
        "wrong_labels_test_correlation": wrong_labels_test_correlation(runs), "runs": runs,
    })
    write_text(args.out / "student_repeats_table.md", markdown(table, best))
    print(markdown(table, best))


if __name__ == "__main__":
    main()
