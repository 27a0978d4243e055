"""The run's pictures: what each panel shows and labels, drawn from small hand-written reports."""

from __future__ import annotations

import pytest

from pate_lightning import layout
from pate_lightning.io import write_json
from pate_lightning.pate import figures
from pate_lightning.pipeline import run_report

VAE_HISTORY = [{"epoch": e, "recon": 200.0 - e, "kl": 5.0 + e, "loss": 210.0, "beta": min(1.0, e / 2)} for e in range(4)]
CLASSIFIER_HISTORY = [{"epoch": e, "loss": 2.0 - 0.3 * e, "accuracy": 0.3 + 0.1 * e} for e in range(4)]


@pytest.fixture
def drawn(monkeypatch):
    """The figures run_report saves, kept open for inspection instead of written."""
    kept = {}

    def keep(fig, path):
        kept[path.stem] = fig
        return path

    monkeypatch.setattr(run_report, "_save", keep)
    return kept


def write_teacher(run_dir, vae_history, test_accuracy=0.91):
    write_json(layout.vae_report_file(run_dir, 0), {"history": vae_history, "generator": "per_teacher"})
    write_json(layout.classifier_report_file(layout.classifiers_root(run_dir), 0),
               {"history": CLASSIFIER_HISTORY, "test_accuracy": test_accuracy})


def labels(fig):
    return {ax.get_ylabel() for ax in fig.axes} - {""}


def test_loss_figure_labels_both_axes_of_each_panel_and_shows_test_accuracy(tmp_path, drawn):
    write_teacher(tmp_path, VAE_HISTORY)
    run_report.loss_curves(tmp_path, 0)
    fig = drawn["losses_teacher_0"]
    assert [ax.get_title() for ax in fig.axes if ax.get_title()] == ["VAE", "classifier"]
    assert {"beta (KL weight)", "accuracy", "loss (NLL)", "per-image loss (nats, log scale)"} <= labels(fig)
    legend_texts = {t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()}
    assert "test accuracy 0.910" in legend_texts and "beta" in legend_texts
    assert fig.get_layout_engine() is not None  # constrained: twin ticks and the title kept clear of the plots


def test_no_vae_panel_when_no_vae_was_trained(tmp_path, drawn):
    write_teacher(tmp_path, vae_history=[])  # the `public` family: the VAE report has no history
    run_report.loss_curves(tmp_path, 0)
    assert [ax.get_title() for ax in drawn["losses_teacher_0"].axes if ax.get_title()] == ["classifier"]


@pytest.mark.parametrize("kept, scale", [(900, "linear"), (40, "log")])
def test_funnel_is_linear_when_counts_are_close(tmp_path, drawn, kept, scale):
    funnel = {"pool": 1000, "confident": 950, "non_memorized": 950, "diverse": 920, "kept": kept}
    write_json(layout.selection_report_file(tmp_path, 0), {"funnel": funnel})
    run_report.funnel_chart(tmp_path, [0])
    assert drawn["selection_funnel"].axes[0].get_yscale() == scale


def pate_run(mechanism="gnmax", parameters=None, asked=300):
    parameters = parameters or {"sigma": 40.0}
    eps = figures.epsilon_by_queries(mechanism, parameters, [asked], 1e-5)[0]
    return {"mechanism": mechanism, "parameters": parameters, "mechanism_description": f"{mechanism}(...)",
            "queries_asked": asked, "student_method": "fixmatch",
            "privacy": {"delta": 1e-5, "conversion": "balle2020", "epsilon_data_independent": eps},
            "student": {"test_accuracy": 0.9, "test_accuracy_per_class": [0.8 + 0.02 * c for c in range(10)],
                        "sizes": {"test": 1000}}}


def test_pate_figures_epsilon_against_queries_and_student_per_class(tmp_path, drawn):
    confident = pate_run("confident_gnmax", {"threshold": 200.0, "sigma1": 150.0, "sigma2": 40.0}, asked=500)
    write_json(layout.pate_report_file(tmp_path), {"runs": [pate_run(), confident]})
    run_report.print_run_report(tmp_path)
    epsilon = drawn["pate_epsilon"].axes[0]
    assert epsilon.get_xlabel() == "queries asked" and epsilon.get_ylabel().startswith("ε (data-independent")
    curves = [line for line in epsilon.get_lines() if len(line.get_xdata()) > 1]
    assert len(curves) == 2 and all(list(c.get_ydata()) == sorted(c.get_ydata()) for c in curves)  # grows with queries
    marked = [line for line in epsilon.get_lines() if len(line.get_xdata()) == 1]
    assert [(m.get_xdata()[0], m.get_ydata()[0]) for m in marked] == [
        (300, pate_run()["privacy"]["epsilon_data_independent"]), (500, confident["privacy"]["epsilon_data_independent"])]
    student = drawn["student_per_class"].axes[0]
    assert [round(p.get_height(), 2) for p in student.patches] == [round(0.8 + 0.02 * c, 2) for c in range(10)]
    assert student.get_ylabel() == "test accuracy" and "fixmatch" in student.get_title()
