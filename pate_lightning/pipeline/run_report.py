"""The closing summary of a run: one table over teachers and stages, and the pictures.

Reads only the files the stages wrote (reports, datasets); writes PNGs under ``figures/``:
each teacher's kept samples with their labels, rejected samples grouped by reason, the selection
funnel over all teachers, and the PATE stage's (``pate/figures.py``). Values computed from a private shard without
noise (teacher accuracies, the VAE's reconstruction and KL, the guide's criteria, training curves) appear only on
request (``diagnostics=True``), marked ``[diag]``, and their pictures go under ``private/figures/``.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any, Optional

import matplotlib

matplotlib.use("Agg")  # headless: files only
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from pate_lightning import layout  # noqa: E402
from pate_lightning.errors import PateError  # noqa: E402
from pate_lightning.io import REGENERATE, load_torch, write_bytes  # noqa: E402
from pate_lightning.pate.figures import save_pate_figures  # noqa: E402

FUNNEL_STEPS = ("pool", "confident", "non_memorized", "diverse", "kept")
DIAGNOSTIC = "[diag]"  # a column or picture from un-noised private values: not for release
CRITERIA_SHORT = {"mean_confidence": "conf", "diversity_ratio": "div", "min_nn_distance": "nn", "class_histogram_l1": "hist"}


def _json(path: Path) -> Optional[dict[str, Any]]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _save(fig: Any, path: Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return write_bytes(path, buffer.getvalue())


def teacher_ids_in(run_dir: Path) -> list[int]:
    """Teachers with a folder under ``teachers/`` or ``teacher_vaes/``."""
    found = layout.find_teachers(layout.teachers_root(run_dir), lambda t: layout.teacher_dir(run_dir, t))
    found += layout.find_teachers(layout.vaes_root(run_dir), lambda t: layout.vae_dir(run_dir, t))
    return sorted(set(found))


def kept_grid(run_dir: Path, teacher_id: int, limit: int = 40) -> Optional[Path]:
    samples_file = layout.synthetic_samples_file(run_dir, teacher_id)
    labels_file = layout.labels_file(run_dir, teacher_id)
    if not samples_file.exists() or not labels_file.exists():
        return None
    samples = load_torch(samples_file, f"teacher {teacher_id} synthetic samples")
    rows = labels_file.read_text().splitlines()[1:]
    if len(samples) == 0:
        return None
    count = min(limit, len(samples))
    # spread the picks over the dataset (it is ordered by class) so every class shows
    picks = torch.linspace(0, len(samples) - 1, count).round().long().tolist()
    cols = 10
    fig, axes = plt.subplots((count + cols - 1) // cols, cols, figsize=(cols * 0.9, ((count + cols - 1) // cols) * 1.05))
    for ax in axes.flat:
        ax.axis("off")
    for ax, index in zip(axes.flat, picks):
        label, confidence = rows[index].split(",")[1:3]
        ax.imshow(samples[index, 0], cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"{label} ({float(confidence):.2f})", fontsize=7)
    fig.suptitle(f"teacher {teacher_id}: kept samples, label (confidence)", fontsize=9)
    return _save(fig, layout.figure_file(run_dir, f"kept_teacher_{teacher_id}"))


def rejected_grid(run_dir: Path, teacher_id: int, per_reason: int = 8) -> Optional[Path]:
    path = layout.rejected_examples_file(run_dir, teacher_id)
    if not path.exists():
        return None
    examples = load_torch(path, f"teacher {teacher_id} rejected examples")  # reason -> (n, 1, 28, 28)
    if not isinstance(examples, dict):
        raise PateError(f"teacher {teacher_id} rejected examples: not a dict of image tensors. {REGENERATE}", path)
    reasons = [r for r, images in examples.items() if len(images)]
    if not reasons:
        return None
    fig, axes = plt.subplots(len(reasons), per_reason, figsize=(per_reason * 0.9, len(reasons) * 1.0), squeeze=False)
    for row, reason in enumerate(reasons):
        for col in range(per_reason):
            ax = axes[row, col]
            ax.axis("off")
            if col < len(examples[reason]):
                ax.imshow(examples[reason][col, 0], cmap="gray", vmin=0, vmax=1)
        axes[row, 0].set_title(reason, fontsize=8, loc="left")
    fig.suptitle(f"teacher {teacher_id}: rejected candidates by reason", fontsize=9)
    return _save(fig, layout.figure_file(run_dir, f"rejected_teacher_{teacher_id}"))


def loss_curves(run_dir: Path, teacher_id: int) -> Optional[Path]:
    """The teacher's VAE and classifier training curves, a panel for each that was trained."""
    vae = _json(layout.vae_report_file(run_dir, teacher_id))
    classifier = _json(layout.classifier_report_file(layout.classifiers_root(run_dir), teacher_id))
    vae_history = (vae or {}).get("history") or []  # the `public` family trains nothing: no panel
    classifier_history = (classifier or {}).get("history") or []
    panels = [name for name, history in (("vae", vae_history), ("classifier", classifier_history)) if history]
    if not panels:
        return None
    # constrained layout keeps the twin axes' tick labels off the next panel and the title off the plots
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.2), layout="constrained", squeeze=False)
    for ax, panel in zip(axes[0], panels):
        if panel == "vae":
            _vae_panel(ax, vae_history)
        else:
            _classifier_panel(ax, classifier_history, classifier.get("test_accuracy"))
    fig.suptitle(f"teacher {teacher_id}: training curves {DIAGNOSTIC} (un-noised shard values, not for release)", fontsize=9)
    return _save(fig, layout.private_figure_file(run_dir, f"losses_teacher_{teacher_id}"))  # shard losses, no noise


def _vae_panel(ax: Any, history: list[dict[str, Any]]) -> None:
    epochs = [row["epoch"] for row in history]
    lines = ax.plot(epochs, [row["recon"] for row in history], label="reconstruction")
    lines += ax.plot(epochs, [row["kl"] for row in history], label="KL")
    ax.set_yscale("log")
    ax.set_ylabel("per-image loss (nats, log scale)")
    twin = ax.twinx()
    lines += twin.plot(epochs, [row.get("beta", 1.0) for row in history], "k:", label="beta")
    twin.set_ylim(0, 1.05)
    twin.set_ylabel("beta (KL weight)")
    ax.legend(lines, [line.get_label() for line in lines], fontsize=7, loc="center right")
    ax.set_title("VAE", fontsize=9)
    ax.set_xlabel("epoch")


def _classifier_panel(ax: Any, history: list[dict[str, Any]], test_accuracy: Optional[float]) -> None:
    epochs = [row.get("epoch", i) for i, row in enumerate(history)]
    lines = ax.plot(epochs, [row.get("loss") for row in history], label="train loss")
    ax.set_ylabel("loss (NLL)")
    twin = ax.twinx()
    if "accuracy" in history[0]:
        lines += twin.plot(epochs, [row["accuracy"] for row in history], color="tab:green", label="train accuracy")
    if test_accuracy is not None:
        lines.append(twin.axhline(test_accuracy, color="tab:red", linestyle="--",
                                  label=f"test accuracy {test_accuracy:.3f}"))
    twin.set_ylim(0, 1.02)
    twin.set_ylabel("accuracy")
    ax.legend(lines, [line.get_label() for line in lines], fontsize=7, loc="center right")
    ax.set_title("classifier", fontsize=9)
    ax.set_xlabel("epoch")


LOG_FUNNEL_RATIO = 10  # the funnel's counts spread wider than this: log scale, else linear (close counts stay readable)


def funnel_chart(run_dir: Path, teacher_ids: list[int]) -> Optional[Path]:
    reports = {t: _json(layout.selection_report_file(run_dir, t)) for t in teacher_ids}
    reports = {t: r for t, r in reports.items() if r and "funnel" in r}
    if not reports:
        return None
    fig, ax = plt.subplots(figsize=(7, 3.2), layout="constrained")
    width = 0.8 / len(reports)
    counts = []
    for i, (teacher_id, report) in enumerate(reports.items()):
        values = [report["funnel"].get(step, 0) for step in FUNNEL_STEPS]
        counts += values
        ax.bar([x + i * width for x in range(len(FUNNEL_STEPS))], values, width, label=f"teacher {teacher_id}")
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(FUNNEL_STEPS))], FUNNEL_STEPS)
    positive = [c for c in counts if c > 0]
    if positive and max(positive) > LOG_FUNNEL_RATIO * min(positive):
        ax.set_yscale("log")
        ax.set_ylabel("candidates (log scale)")
    else:
        ax.set_ylabel("candidates")
    ax.set_title("selection funnel: pool -> confident -> non-memorized -> diverse -> kept (quota)", fontsize=9)
    if len(reports) <= 10:
        ax.legend(fontsize=7)
    return _save(fig, layout.figure_file(run_dir, "selection_funnel"))


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def teacher_header(diagnostics: bool) -> list[str]:
    private = ["clf acc", "vae recon", "vae kl", *CRITERIA_SHORT.values(), "agree"]
    return ["teacher", "pool", "kept", *([f"{DIAGNOSTIC} {name}" for name in private] if diagnostics else [])]


def teacher_rows(run_dir: Path, teacher_ids: list[int], diagnostics: bool = False) -> list[list[str]]:
    """Per teacher: pool and kept counts, then (``diagnostics``) the values read from its shard without noise."""
    rows = []
    for teacher_id in teacher_ids:
        selection = _json(layout.selection_report_file(run_dir, teacher_id)) or {}
        cells = [str(teacher_id), _fmt(selection.get("pool_size")), _fmt(selection.get("kept"))]
        if diagnostics:  # the shard-derived reports are read only when shown
            classifier = _json(layout.classifier_report_file(layout.classifiers_root(run_dir), teacher_id)) or {}
            vae = (_json(layout.vae_report_file(run_dir, teacher_id)) or {}).get("final") or {}
            criteria = (_json(layout.evaluation_report_file(run_dir, teacher_id)) or {}).get("criteria", {})
            cells += [_fmt(classifier.get("test_accuracy")), _fmt(vae.get("recon"), 1), _fmt(vae.get("kl"), 1)]
            for name in CRITERIA_SHORT:
                entry = criteria.get(name) or {}
                cells.append("-" if not entry else ("PASS" if entry.get("passed") else "FAIL"))
            cells.append(_fmt((criteria.get("agreement_rate") or {}).get("value")))
        rows.append(cells)
    return rows


def format_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in rows]
    return "\n".join(lines)


def _seeded(privacy: dict) -> list[str]:
    """What drew its noise from a seed: the stages before the votes, then the votes themselves."""
    return [*(privacy.get("seeded_by") or []), *(["vote noise"] if privacy.get("noise_seed") is not None else [])]


def pate_lines(run_dir: Path) -> list[str]:
    report = _json(layout.pate_report_file(run_dir))
    if not report:
        return []
    runs = report.get("runs") or [report]
    lines = []
    for run in runs:
        privacy = run.get("privacy") or {}
        student = run.get("student") or {}
        end_to_end = privacy.get("epsilon_end_to_end")
        lines.append(
            f"PATE  source={run.get('query_source')}  mechanism={run.get('mechanism')}  "
            f"teachers={run.get('num_teachers')}  queries={run.get('queries_asked')}  answered={run.get('queries_answered')}  "
            f"scope={privacy.get('privacy_scope', '-')}  "
            f"eps(data-indep.)={_fmt(privacy.get('epsilon_data_independent'), 2)}  "
            + (f"eps(released)={_fmt(privacy.get('epsilon_data_dependent_released'), 2)}  "
               if privacy.get("data_dependent_released") else "(data-dep. not released)  ")
            + f"eps(end-to-end)={'unbounded' if end_to_end is None else _fmt(end_to_end, 2)}  "
            f"delta={privacy.get('delta')} conversion={privacy.get('conversion', '-')}  "
            + (f"NOT PRIVATE (seeded: {', '.join(_seeded(privacy))})  " if privacy.get("private") is False else "")
            + f"student={run.get('student_method', 'supervised')}  accuracy={_fmt(student.get('test_accuracy'), 4)}"
            + _pretraining_note(student.get("pretraining"))
        )
    return lines


def _pretraining_note(pretraining: dict | None) -> str:
    """The public-only score beside the student's, so what the private labels add stays visible."""
    if not pretraining:
        return ""
    return f" (public pretraining alone on {pretraining.get('set')}: {_fmt(pretraining.get('test_accuracy'), 4)})"


def family_line(run_dir: Path, teacher_ids: list[int], diagnostics: bool = False) -> str:
    """Which generator family made the candidates, from the teachers' training reports."""
    families = sorted({(_json(layout.vae_report_file(run_dir, t)) or {}).get("generator", "per_teacher") for t in teacher_ids})
    marked = (f"{DIAGNOSTIC} columns and private/figures/ read each teacher's shard without noise (the VAE's losses "
              "even for DP generators): diagnostics, NOT FOR RELEASE" if diagnostics else
              "values read from the shards without noise (teacher accuracies, VAE losses, criteria) are shown only "
              "with --diagnostics true")
    return f"generator family: {', '.join(families) or '-'}; {marked}"


def print_run_report(run_dir: str | Path, diagnostics: bool = False) -> str:
    """Print (and return) the summary table, write the pictures and list their paths.

    ``diagnostics``: also the values read from the shards without noise, marked, and their loss curves
    under ``private/figures/``.
    """
    run_dir = Path(run_dir)
    teacher_ids = teacher_ids_in(run_dir)
    text = [format_table(teacher_header(diagnostics), teacher_rows(run_dir, teacher_ids, diagnostics)),
            family_line(run_dir, teacher_ids, diagnostics), *pate_lines(run_dir)]
    pictures = []
    for teacher_id in teacher_ids:
        pictures += [kept_grid(run_dir, teacher_id), rejected_grid(run_dir, teacher_id),
                     loss_curves(run_dir, teacher_id) if diagnostics else None]
    pictures.append(funnel_chart(run_dir, teacher_ids))
    runs = (_json(layout.pate_report_file(run_dir)) or {}).get("runs") or []
    pictures += save_pate_figures(runs, lambda name: layout.figure_file(run_dir, name), _save)
    pictures = [p for p in pictures if p is not None]
    text.append("pictures:\n" + "\n".join(f"  {p}" for p in pictures) if pictures else "pictures: none")
    output = "\n".join(text)
    print(output)
    return output
