"""experiments/student_repeats.py (issue #14's repeated rows) and its table."""

import argparse
import json
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch

from experiments import student_repeats as repeats
from experiments import student_repeats_table as table
from pate_lightning.pate.aggregate import Mechanism
from pate_lightning.pate.queries import QuerySet
from tests.conftest import REPO
from tests.test_student import separable_digits


def test_jobs_go_round_by_round():
    assert repeats.jobs(["a", "b"], ["fix40", "sup"], 2)[:4] == [
        ("a", "fix40", 0), ("b", "fix40", 0), ("a", "sup", 0), ("b", "sup", 0)]
    counts = repeats.jobs(["b"], ["fix40", "sup"], None)
    assert len(counts) == repeats.VARIANTS["fix40"][1] + repeats.VARIANTS["sup"][1]


def _votes_file(path: Path, rows: int, counted: int) -> Path:
    votes = torch.zeros(rows, 10, dtype=torch.long)
    votes[:, 0] = 3
    mask = torch.zeros(rows, dtype=torch.bool)
    mask[:counted] = True
    torch.save({"key": "k", "teacher_ids": [0, 1, 2], "normalization": None, "votes": votes, "counted": mask}, path)
    return path


def test_votes_lacking_an_asked_row_stop_with_the_file_named(tmp_path):
    path = _votes_file(tmp_path / "votes.pt", rows=10, counted=4)
    votes, ids = repeats.read_votes(path, torch.arange(4))
    assert votes.shape == (4, 10) and ids == [0, 1, 2]
    with pytest.raises(SystemExit, match="votes.pt: the vote cache lacks rows"):
        repeats.read_votes(path, torch.arange(5))


@pytest.mark.parametrize("held_out", [False, True])
def test_one_run_is_publishable_and_scored_on_test_and_selection_apart(tmp_path, monkeypatch, held_out):
    """A tiny pool: 3 teachers all voting the true class, LNMax, FixMatch for one epoch, public pretraining; a
    held-out variant's unlabeled pool stops where the selection set starts."""
    images, truth = separable_digits(60)
    votes = torch.nn.functional.one_hot(truth, 10) * 3
    torch.save({"key": "k", "teacher_ids": [0, 1, 2], "normalization": None, "votes": votes,
                "counted": torch.ones(60, dtype=torch.bool)}, tmp_path / "votes.pt")
    test = separable_digits(20, seed=1)
    monkeypatch.setattr(repeats, "SELECTION", (40, 60))
    monkeypatch.setattr(repeats, "ROWS", {"a": (Mechanism("lnmax", gamma=0.05), 30)})
    small = replace(repeats.FIXMATCH, batch_size=8, mu=2, epochs=1, pretrain_epochs=1, label_filter=0.5)
    monkeypatch.setattr(repeats, "VARIANTS", {"tiny": (small, 1)})
    monkeypatch.setattr(repeats, "SELECTION_HELD_OUT", frozenset({"tiny"} if held_out else ()))
    monkeypatch.setattr(repeats, "_DATA", {
        "queries": QuerySet("mnist_test", tmp_path, images, truth=truth), "test": test,
        "selection": (images[40:60], (truth[40:60] + 1) % 10), "public": separable_digits(40, seed=2)})
    args = argparse.Namespace(data_dir=str(tmp_path), votes=str(tmp_path / "votes.pt"), accelerator="cpu",
                              out=str(tmp_path), epochs=None, device_name="CPU", workers=1, threads=1)
    record = repeats.one_run("a", "tiny", 0, args)
    run = record["run"]
    assert run["queries_asked"] == 30 and run["privacy"]["private"] and run["protocol"] == "papers"
    assert run["student"]["sizes"]["unlabeled"] == (40 if held_out else 60)
    assert run["student"]["selection_in_unlabeled_pool"] is not held_out and run["student"]["pretraining"]["set"] == "font_digits"
    # the selection labels are all shifted: scored apart from the test set, never mixed into it
    assert run["student"]["selection_accuracy"] < 0.5 and 0 <= run["student"]["test_accuracy"] <= 1
    dropped = run["student"]["labels_dropped"]
    assert 0 <= run["student"]["labels_dropped_wrong"] <= len(dropped) and run["student"]["sizes"]["train"] == 30 - len(dropped)
    flat = table.flat("a", "tiny", "test", "CPU", json.loads(json.dumps(run)))
    assert flat["selection"] == run["student"]["selection_accuracy"] and flat["answered"] == 30
    # a later process with 2 workers rewrote the summary: the run still names the 1 worker it shared the CPU with
    (tmp_path / "summary.json").write_text(json.dumps({"workers": 2, "threads_per_worker": 1, "runs": [record]}))
    assert table.collect([tmp_path / "summary.json"], [])[0]["device"] == "CPU, 1 worker"


@pytest.mark.parametrize("oracle", [False, True])
def test_only_the_true_label_variants_train_on_the_truth_and_say_so(tmp_path, monkeypatch, oracle):
    """Teachers that all vote the wrong class: the student of a PATE variant gets those released labels, the
    oracle diagnostic the true ones, and its record says it is not a PATE result."""
    images, truth = separable_digits(60)
    votes = torch.nn.functional.one_hot((truth + 1) % 10, 10) * 3
    torch.save({"key": "k", "teacher_ids": [0, 1, 2], "normalization": None, "votes": votes,
                "counted": torch.ones(60, dtype=torch.bool)}, tmp_path / "votes.pt")
    monkeypatch.setattr(repeats, "SELECTION", (40, 60))
    # Laplace noise of scale 1 / gamma = 0.01 against a 3-vote margin: the released label is the voted one
    monkeypatch.setattr(repeats, "ROWS", {"a": (Mechanism("lnmax", gamma=100.0), 30)})
    monkeypatch.setattr(repeats, "VARIANTS", {"tiny": (replace(repeats.FIXMATCH, epochs=1), 1)})
    monkeypatch.setattr(repeats, "TRUE_LABELS", frozenset({"tiny"} if oracle else ()))
    monkeypatch.setattr(repeats, "_DATA", {
        "queries": QuerySet("mnist_test", tmp_path, images, truth=truth), "test": separable_digits(20, seed=1),
        "selection": (images[40:60], truth[40:60]), "public": separable_digits(40, seed=2)})
    trained = {}

    def spy(images, labels, *args, **kwargs):
        trained["labels"], trained["images"] = labels, images
        return {"labels_dropped": []}

    monkeypatch.setattr(repeats, "train_student", spy)
    args = argparse.Namespace(data_dir=str(tmp_path), votes=str(tmp_path / "votes.pt"), accelerator="cpu",
                              out=str(tmp_path), epochs=None, device_name="CPU", workers=1, threads=1)
    run = repeats.one_run("a", "tiny", 0, args)["run"]
    positions = [int(torch.nonzero((images == image).flatten(1).all(1))[0]) for image in trained["images"]]
    assert len(positions) == run["queries_answered"] > 0
    expected = truth[positions] if oracle else (truth[positions] + 1) % 10
    assert torch.equal(trained["labels"], expected)
    assert ("diagnostic" in run["student"]) is oracle and run["label_accuracy"] == 0.0  # the released labels


def test_true_label_variants_are_never_chosen_and_are_marked():
    def group(variant, selection, true_labels):
        return {"row": "b", "variant": variant, "description": "d", "selection_held_out": True,
                "true_labels": true_labels, "runs": 2, "test_mean": 0.99, "test_sd": 0.001, "test_min": 0.98,
                "test_max": 0.99, "selection_mean": selection, "selection_runs": 2, "answered_mean": 290,
                "label_accuracy_mean": 0.97, "epsilon_labels": 3.85, "epsilon_labels_all_runs_composed": 5.4,
                "epsilon_released_max": 1.5,
                "public_only_mean": 0.9, "seconds_by_device": {"CPU": 800.0}}

    groups = [group("fix120_filter_ho", 0.98, False), group("fix120_oracle_ho", 0.995, True)]
    best = table.chosen_variants(groups)
    assert best["b"]["variant"] == "fix120_filter_ho"
    text = table.markdown(groups, best)
    assert "`fix120_oracle_ho` † ‡" in text and "‡ Diagnostic, not a PATE result" in text
    assert "fix120_oracle_ho" in repeats.TRUE_LABELS and "fix120_oracle_ho" in repeats.SELECTION_HELD_OUT
    assert not table._fix120_family("fix120_oracle_ho") and not table._fixmatch_kept("fix120_oracle_ho", 120)


def _report_entry(student: dict) -> dict:
    mechanism, asked = repeats.ROWS["b"]
    return {"mechanism_description": mechanism.describe(), "queries_asked": asked, "protocol": "papers",
            "student": student}


def test_cli_reports_match_a_variant_by_their_settings_and_defaults():
    recorded = asdict(repeats.VARIANTS["fix40"][0])
    del recorded["pretrain_mix"]  # a report older than the setting ran at its default
    assert table.match(_report_entry(recorded)) == ("b", "fix40")
    assert table.match(_report_entry({**recorded, "lr": 0.01})) is None
    assert table.match({**_report_entry(recorded), "queries_asked": 600}) is None


def test_the_selection_set_not_the_test_set_chooses():
    def group(row, variant, selection, test, held_out=False):
        return {"row": row, "variant": variant, "selection_mean": selection, "test_mean": test,
                "selection_held_out": held_out}

    groups = [group("b", "x", 0.990, 0.99), group("b", "y", 0.995, 0.97), group("a", "z", None, 0.99)]
    chosen = table.chosen_variants(groups)
    assert list(chosen) == ["b"] and chosen["b"]["variant"] == "y"
    # a variant scored on selection images outside its unlabeled pool outranks every biased score
    chosen = table.chosen_variants(groups + [group("b", "w", 0.980, 0.96, held_out=True)])
    assert chosen["b"]["variant"] == "w"


def test_label_noise_is_correlated_over_long_fixmatch_runs_with_every_label_kept():
    def run(variant, label, test):
        return {"row": "b", "variant": variant, "label_accuracy": label, "test": test}

    runs = [run("fix120", 0.96, 0.97), run("fix240_ema999", 0.97, 0.98), run("fix120_ema999", 0.98, 0.99),
            run("fix40", 0.99, 0.90), run("sup", 0.95, 0.99), run("fix120_filter", 0.90, 0.99)]
    found = table.label_test_correlation(runs)
    # only the three long runs with all labels count: a perfect line
    assert found["b"]["runs"] == 3 and found["b"]["r"] == pytest.approx(1.0)
    assert found["b"]["variants"] == ["fix120", "fix120_ema999", "fix240_ema999"]


def test_wrong_labels_trained_count_the_filter_and_feed_a_correlation():
    def run(variant, answered, accuracy, dropped_wrong, test, label_filter=0.99):
        student = {"label_filter": label_filter, "labels_dropped_wrong": dropped_wrong}
        return {"row": "b", "variant": variant, "queries_answered": answered, "label_accuracy": accuracy,
                "student": student, "test": test}

    # 300 answered at 98%: 6 wrong, 2 of them dropped by the filter
    assert table.wrong_labels_trained(run("fix120_filter", 300, 0.98, 2, 0.98)) == 4
    unfiltered = run("fix120", 300, 0.98, None, 0.98, label_filter=0.0)
    del unfiltered["student"]["labels_dropped_wrong"]
    assert table.wrong_labels_trained(unfiltered) == 6
    assert table.wrong_labels_trained(run("fix120_filter", 300, 0.98, None, 0.98)) is None  # not recorded
    runs = [dict(r, wrong_labels_trained=table.wrong_labels_trained(r)) for r in [
        run("fix120_filter", 300, 0.98, 2, 0.99), run("fix120_filter_ho", 300, 0.97, 1, 0.98),
        run("fix120_filter90_ho", 300, 0.96, 0, 0.97), run("fix120_elastic_ho", 300, 0.90, 0, 0.99),
        run("fix40", 300, 0.90, 0, 0.99, label_filter=0.0)]]
    found = table.wrong_labels_test_correlation(runs)
    # 4, 8 and 12 wrong labels against 99, 98 and 97%: the elastic and 40-epoch runs are not in the family
    assert found["b"]["runs"] == 3 and found["b"]["r"] == pytest.approx(-1.0)
    assert found["b"]["wrong_labels_trained_range"] == [4, 12]


def test_the_papers_config_is_the_chosen_student():
    """configs/student_papers.yaml over configs/pate.yaml gives exactly fix120_crop_tta_ho, the student the selection
    set chose for both rows in session 10."""
    from jsonargparse import ArgumentParser

    from pate_lightning.pate.command import pate_command
    from pate_lightning.pate.student_training import StudentSettings

    parser = ArgumentParser()
    parser.add_argument("--config", action="config")
    parser.add_function_arguments(pate_command)
    configs = Path(__file__).resolve().parents[1] / "configs"
    parsed = parser.parse_args(["--config", str(configs / "pate.yaml"), "--config", str(configs / "student_papers.yaml")])
    student = parser.instantiate_classes(parsed).student
    assert isinstance(student, StudentSettings) and parsed.protocol == "papers" and student == repeats.VARIANTS["fix120_crop_tta_ho"][0]


def test_a_table_grows_from_an_earlier_table_json_and_shows_single_view_scores(tmp_path):
    """--previous keeps the runs of a committed student_repeats.json (older runs had no test views: their single-view
    scores are their scores), so the table can be rebuilt once the raw run files are gone."""
    def run(variant, test, selection, single=None):
        record = {"row": "b", "variant": variant, "test": test, "selection": selection, "answered": 300,
                  "label_accuracy": 0.98, "epsilon_data_independent": 3.8, "epsilon_released": 1.5,
                  "epsilon_labels": 3.8, "public_only": 0.9, "seconds": 600.0, "device": "CPU, 2 workers",
                  "wrong_labels_trained": 4}
        return record if single is None else {**record, "test_single_view": single[0], "selection_single_view": single[1]}

    (tmp_path / "old.json").write_text(json.dumps({"runs": [
        run("fix120_crop_ho", 0.98, 0.99), run("fix120_crop_tta_ho", 0.99, 0.995, single=(0.981, 0.991))]}))
    runs = table.collect([], [], tmp_path / "old.json")
    assert [(r["test_single_view"], r["selection_single_view"]) for r in runs] == [(0.98, 0.99), (0.981, 0.991)]
    groups = table.groups(runs)
    text = table.markdown(groups, table.chosen_variants(groups))
    assert "| 98.10% / 99.10% |" in text and "(no test views)" in text
    assert table.chosen_variants(groups)["b"]["variant"] == "fix120_crop_tta_ho"


def test_a_figure_over_k_runs_states_the_k_releases_composed():
    committed = json.loads((REPO / "docs/results/student_repeats.json").read_text())
    for row in ("a", "b"):
        one_run = next(r["epsilon_labels"] for r in committed["runs"] if r["row"] == row)
        assert table.composed_epsilon(row, 1) == pytest.approx(one_run, rel=1e-9)  # the ledger reproduces one run
    # eight releases of the same votes: composed in RDP and converted once, far above one run, below 8 x one run
    eight = table.composed_epsilon("b", 8)
    assert 3 * table.composed_epsilon("b", 1) < eight < 8 * table.composed_epsilon("b", 1)
    groups = table.groups([r for r in committed["runs"] if r["row"] == "b"][:3])
    assert groups[0]["epsilon_labels_all_runs_composed"] == pytest.approx(table.composed_epsilon("b", groups[0]["runs"]))
    text = table.markdown(groups, {})
    assert "ε of the runs composed" in text and "the guarantee of one run" in text
