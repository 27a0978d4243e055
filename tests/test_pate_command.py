import json
import subprocess
import sys

import pytest

from pate_lightning.cli import cli_main
from pate_lightning.errors import PateError
from pate_lightning.pate.command import StudentSettings, pate_command
from tests.conftest import REPO
from tests.helpers import write_fake_mnist
from tests.pate_helpers import random_images, write_combined, write_teachers

FAST_STUDENT = StudentSettings(epochs=1, batch_size=8, val_fraction=0.2)


@pytest.fixture
def run(tmp_path):
    """A run directory with three teachers that always answer 3, 3 and 7, and a fake MNIST (40 test images)."""
    data_dir = write_fake_mnist(tmp_path / "data", train=20, test=40)
    run_dir = tmp_path / "run"
    write_teachers(run_dir / "trained_nets", [0, 1, 2], favourites=[3, 3, 7])
    return {"run_dir": str(run_dir), "data_dir": str(data_dir), "student": FAST_STUDENT, "accelerator": "cpu"}


def read_report(run):
    return json.loads((REPO / run["run_dir"] / "pate" / "report.json").read_text())


def read_diagnostics(run):
    return json.loads((REPO / run["run_dir"] / "pate" / "diagnostics.json").read_text())


def test_mnist_test_report_then_a_second_mechanism_reuses_the_votes(run, capsys):
    result = pate_command(**run, num_queries=15, mechanism="gnmax", sigma=0.1, seed=42)
    report, diagnostics = read_report(run), read_diagnostics(run)
    assert report["runs"] == [result]
    assert result["query_source"] == "mnist_test" and result["queries_available"] == 20  # first half of 40
    assert result["queries_asked"] == result["queries_answered"] == 15
    assert result["num_teachers"] == 3 and result["teacher_ids"] == [0, 1, 2]
    assert result["parameters"] == {"sigma": 0.1}
    # every answer is 3; the fake truth is index % 10, so queries 3 and 13 are right
    assert result["answered_label_counts"][3] == 15
    assert result["label_accuracy"] == pytest.approx(2 / 15)
    diagnostic = diagnostics["runs"][-1]
    assert diagnostics["not_for_release"] is True and "NOT FOR RELEASE" in diagnostics["note"]
    assert diagnostic["plurality_accuracy"] == pytest.approx(2 / 15) and diagnostic["generator_label_agreement"] is None
    privacy = result["privacy"]
    assert privacy["delta"] == 1e-5 and privacy["data_dependent_released"] is True
    assert privacy["conversion"] == "balle2020" and "Balle" in privacy["conversion_reference"]
    assert privacy["privacy_scope"] == "labels" and privacy["private"] is False and privacy["noise_seed"] == 42
    assert 0 < diagnostic["epsilon_data_dependent"] <= privacy["epsilon_data_independent"]
    assert diagnostic["release_fixed"]["epsilon"] >= diagnostic["epsilon_data_dependent"]
    release = privacy["release"]
    assert release["order"] == 16.0 and release["beta"] == pytest.approx(0.49 / 16)
    assert isinstance(privacy["epsilon_data_dependent_released"], float)
    # the labels' epsilon composes the votes with the release; public queries: the student's end to end
    assert privacy["epsilon_labels"] > privacy["epsilon_data_independent"]
    assert privacy["epsilon_end_to_end"] == privacy["epsilon_labels"]
    student = result["student"]
    assert student["sizes"] == {"train": 12, "val": 3, "test": 20} and student["epochs"] == 1
    assert 0 <= student["test_accuracy"] <= 1 and len(student["test_accuracy_per_class"]) == 10
    assert result["votes"]["rows_counted"] == 15 and (REPO / run["run_dir"] / "pate/votes_mnist_test.pt").is_file()
    assert "Theorem 23" in report["note"] and "not itself privately released" in report["note"]
    assert report["anchors"][0]["epsilon"] == 2.04
    table = capsys.readouterr().out
    assert "eps data-indep." in table and "gnmax(sigma=0.1)" in table and "eps released" in table
    assert "gnmax(sigma=0.1): released by smooth sensitivity (Theorem 23) at fixed order 16" in table
    assert "reproducible: NOT PRIVATE" in table and "[diag] plurality acc" in table and "labels" in table

    again = pate_command(**run, num_queries=20, mechanism="lnmax", gamma=10.0, seed=42)
    assert again["privacy"]["data_dependent_released"] is False and again["privacy"]["release"] is None
    assert "lnmax(gamma=10): data-dependent epsilon not privately released" in capsys.readouterr().out
    assert again["votes"]["rows_counted"] == 5 and again["votes"]["rows_from_cache"] == 15
    assert [r["mechanism"] for r in read_report(run)["runs"]] == ["gnmax", "lnmax"]
    rerun = pate_command(**run, num_queries=15, mechanism="gnmax", sigma=0.1, seed=42)  # replaces it; same seed, same draw
    assert rerun["privacy"]["epsilon_data_dependent_released"] == privacy["epsilon_data_dependent_released"]
    assert [r["mechanism"] for r in read_report(run)["runs"]] == ["lnmax", "gnmax"]
    pate_command(**run, num_queries=10, mechanism="gnmax", sigma=0.1, seed=42)  # another query count: kept beside it
    assert [(r["mechanism"], r["queries_asked"]) for r in read_report(run)["runs"]] == [
        ("lnmax", 20), ("gnmax", 15), ("gnmax", 10)]
    assert len(read_diagnostics(run)["runs"]) == 3


def test_synthetic_queries_report_agreement_with_the_generating_teachers(run, tmp_path):
    labels = [3] * 6 + [7] * 4
    samples = write_combined(tmp_path / "run" / "synthetic", random_images(10), labels=labels)
    result = pate_command(**run, query_source="synthetic", num_queries=None, mechanism="confident_gnmax",
                          threshold=1.0, sigma1=0.1, sigma2=0.1)
    assert result["query_file"] == str(samples) and result["queries_available"] == 10
    assert result["queries_asked"] == result["queries_answered"] == 10  # max vote 2 >= T = 1
    assert result["label_accuracy"] is None  # no truth for synthetic images
    # the ensemble says 3; six generators did: agreement with non-private labels is a diagnostic
    assert read_diagnostics(run)["runs"][-1]["generator_label_agreement"] == pytest.approx(0.6)
    assert result["privacy"]["num_answered"] == 10
    # no synthetic metadata with a privacy record: the queries are not private
    assert result["privacy"]["privacy_scope"] == "labels_only_queries_not_private"
    assert result["privacy"]["epsilon_end_to_end"] is None and result["privacy"]["epsilon_labels"] > 0
    assert (tmp_path / "run" / "pate" / "votes_synthetic.pt").is_file()


def test_no_answered_query_still_reports(run):
    result = pate_command(**run, num_queries=5, mechanism="confident_gnmax", threshold=3.0, sigma1=0.01, sigma2=1.0)
    assert result["queries_answered"] == 0 and result["student"] is None  # max vote 2 never reaches T = 3
    assert read_report(run)["runs"][0]["privacy"]["num_queries"] == 5


@pytest.mark.parametrize(
    "settings, error, message",
    [
        ({"delta": 1.5}, ValueError, r"delta must lie in \(0, 1\)"),
        ({"mechanism": "gnmax", "sigma": -1.0}, ValueError, "sigma must be a finite number > 0"),
        ({"threshold": 200.0}, ValueError, "threshold=200 exceeds the 3 teachers"),
        ({"num_queries": 21}, ValueError, "num_queries=21 exceeds the 20 queries of mnist_test"),
        ({"teacher_ids": [0, 9]}, PateError, r"trained_nets: no classifier for teachers \[9\]"),
        ({"query_source": "svhn"}, ValueError, "unknown query_source 'svhn'"),
        ({"query_source": "synthetic"}, PateError, "combined_samples.pt: synthetic samples not found"),
        ({"student": StudentSettings(val_fraction=1.0)}, ValueError, "student.val_fraction"),
        ({"normalization": "imagenet"}, ValueError, "unknown normalization 'imagenet'"),
    ],
)
def test_bad_settings_fail_before_any_output(run, settings, error, message):
    with pytest.raises(error, match=message):
        pate_command(**{**run, "threshold": 2.0, **settings})
    assert not (REPO / run["run_dir"] / "pate").exists()


def test_normalized_synthetic_samples_fail_before_any_output(run, tmp_path):
    write_combined(tmp_path / "run" / "synthetic", (random_images(4) - 0.1307) / 0.3081)
    with pytest.raises(PateError, match=r"combined_samples.pt: pixel values span"):
        pate_command(**run, query_source="synthetic", threshold=2.0)
    assert not (tmp_path / "run" / "pate").exists()


def test_cli_with_the_shipped_config(run, capsys):
    cli_main(["pate", "--config", str(REPO / "configs/pate.yaml"), f"--run_dir={run['run_dir']}",
              f"--data_dir={run['data_dir']}", "--num_queries=10", "--threshold=2", "--sigma1=0.5",
              "--student.epochs=1", "--student.batch_size=4", "--accelerator=cpu"])
    report = read_report(run)
    assert report["runs"][0]["parameters"] == {"threshold": 2.0, "sigma1": 0.5, "sigma2": 40.0}
    assert report["runs"][0]["student"]["batch_size"] == 4
    assert "confident_gnmax(T=2, sigma1=0.5, sigma2=40)" in capsys.readouterr().out


def test_cli_error_is_one_paragraph(run):
    done = subprocess.run(
        [sys.executable, "-m", "pate_lightning", "pate", f"--run_dir={run['run_dir']}",
         f"--data_dir={run['data_dir']}", "--teacher_ids=[0,5]"],
        capture_output=True, text=True, cwd=REPO,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "no classifier for teachers [5]" in done.stderr


def test_votes_are_bounded_per_teacher_chunk(run):
    # the vote counts do not depend on how the teachers are chunked or the images batched
    one = pate_command(**run, num_queries=6, mechanism="gnmax", sigma=0.1, teacher_chunk=1, vote_batch_size=2)
    (REPO / run["run_dir"] / "pate/votes_mnist_test.pt").unlink()
    three = pate_command(**run, num_queries=6, mechanism="gnmax", sigma=0.1, teacher_chunk=3, vote_batch_size=64)
    assert one["answered_label_counts"] == three["answered_label_counts"] == [0, 0, 0, 6, 0, 0, 0, 0, 0, 0]


@pytest.mark.integration
def test_real_mnist_chain_three_teachers(tmp_path, mnist_dir):
    """fit 3 teacher classifiers (5 epochs on their 240-image shards), then pate on 300 mnist_test queries."""
    run_dir = tmp_path / "run"
    cli_main([
        "fit", "--config", str(REPO / "configs/teacher_classifier.yaml"), f"--data.data_dir={mnist_dir}",
        f"--data.run_dir={run_dir}", "--data.teacher_ids=[0,1,2]", "--trainer.max_epochs=5",
        "--trainer.accelerator=cpu", "--trainer.enable_progress_bar=false",
    ])
    result = pate_command(
        run_dir=str(run_dir), data_dir=str(mnist_dir), num_queries=300, mechanism="gnmax", sigma=0.5,
        student=StudentSettings(epochs=1, batch_size=32), accelerator="cpu",
    )
    assert result["num_teachers"] == 3 and result["queries_answered"] == 300
    # three weak teachers still agree with the truth far more often than chance
    diagnostic = json.loads((run_dir / "pate" / "diagnostics.json").read_text())["runs"][-1]
    assert diagnostic["plurality_accuracy"] > 0.6 and result["label_accuracy"] > 0.6
    assert result["student"]["sizes"]["test"] == 5000 and result["student"]["test_accuracy"] > 0.3
    assert result["votes"]["teacher_images_per_second"] > 0
