import json
import subprocess
import sys

import pytest

from pate_lightning.pipeline.cli import cli_main
from pate_lightning.errors import PateError
from pate_lightning.pate.command import StudentSettings, pate_command
from pate_lightning.io import sha256_file
from pate_lightning.pate.publish import check_publishable
from pate_lightning.privacy import DEFAULT_ORDERS, ReleaseSettings, contract_entry
from pate_lightning.pipeline.run_report import pate_lines
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
    return json.loads((REPO / run["run_dir"] / "private" / "pate_diagnostics.json").read_text())


def test_mnist_test_report_then_a_second_mechanism_reuses_the_votes(run, capsys):
    result = pate_command(**run, num_queries=15, mechanism="gnmax", sigma=0.1, seed=42, diagnostics=True)
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
    assert result["votes"]["rows_counted"] == 15 and (REPO / run["run_dir"] / "private/votes_mnist_test.pt").is_file()
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
    assert (tmp_path / "run" / "private" / "votes_synthetic.pt").is_file()


def test_two_unseeded_runs_draw_different_noise(run, capsys):
    # tied votes (3 teachers: 3, 3, 7) under sigma 100: the noise alone decides most labels
    first = pate_command(**run, num_queries=20, mechanism="gnmax", sigma=100.0)
    second = pate_command(**run, num_queries=20, mechanism="gnmax", sigma=100.0)
    assert first["answered_label_counts"] != second["answered_label_counts"]
    for result in (first, second):
        assert result["privacy"]["private"] is True and result["privacy"]["noise_seed"] is None
    assert "NOT PRIVATE" not in capsys.readouterr().out


def _comparable(result):
    """The report entry without what legitimately varies: the DP release draw, timings, the student."""
    privacy = {k: v for k, v in result["privacy"].items() if k != "epsilon_data_dependent_released"}
    drop = {"votes", "seconds", "student", "query_file", "privacy"}
    return {**{k: v for k, v in result.items() if k not in drop}, "privacy": privacy}


def test_report_holds_no_value_computed_from_un_noised_votes(tmp_path):
    # Two ensembles whose noisy labels agree (all 3: unanimous vs 2 of 3) but whose un-noised votes differ.
    data_dir = write_fake_mnist(tmp_path / "data", train=20, test=40)
    results, diagnostics = [], []
    for name, favourites in [("unanimous", [3, 3, 3]), ("split", [3, 3, 7])]:
        write_teachers(tmp_path / name / "trained_nets", [0, 1, 2], favourites=favourites)
        settings = {"run_dir": str(tmp_path / name), "data_dir": str(data_dir), "student": FAST_STUDENT,
                    "accelerator": "cpu"}
        results.append(pate_command(**settings, num_queries=12, mechanism="gnmax", sigma=0.1, seed=1))
        diagnostics.append(read_diagnostics(settings)["runs"][-1])
        report = read_report(settings)
        for entry in report["runs"]:
            check_publishable(entry)  # only allow-listed keys
    assert results[0]["answered_label_counts"] == results[1]["answered_label_counts"] == [0, 0, 0, 12] + [0] * 6
    # the un-noised figures differ ...
    assert diagnostics[0]["epsilon_data_dependent"] != diagnostics[1]["epsilon_data_dependent"]
    # ... yet the reports are identical, but for the one noisy release draw
    assert _comparable(results[0]) == _comparable(results[1])


def test_the_report_allow_list_rejects_un_noised_fields():
    run = {"query_source": "mnist_test", "privacy": {"epsilon_data_independent": 1.0}}
    assert check_publishable(run) is run
    for leak in ({"plurality_accuracy": 0.9}, {"generator_label_agreement": 0.9}):
        with pytest.raises(ValueError, match="allow-list"):
            check_publishable({**run, **leak})
    for leak in ("epsilon_data_dependent", "smooth_sensitivity", "epsilon_data_dependent_with_release"):
        with pytest.raises(ValueError, match=leak):
            check_publishable({**run, "privacy": {leak: 1.0}})
    with pytest.raises(ValueError, match="noise_std"):
        check_publishable({**run, "privacy": {"release": {"order": 16.0, "noise_std": 0.1}}})


def test_synthetic_queries_take_their_scope_from_the_combined_metadata(run, tmp_path):
    synthetic = tmp_path / "run" / "synthetic"
    write_combined(synthetic, random_images(6), labels=[3] * 6)
    orders = list(DEFAULT_ORDERS)
    stages = [contract_entry(stage="generator", name="public", reads_private_data=False, dp=False, note="font prior"),
              contract_entry(stage="generator", name="dp_hybrid", reads_private_data=True, dp=True,
                             rdp=[0.01 * order for order in orders]),
              contract_entry(stage="selection", name="pate", reads_private_data=False, dp=False)]
    recorded = {"outputs": {"samples": {"sha256": sha256_file(synthetic / "combined_samples.pt")}}}
    (synthetic / "combined_metadata.json").write_text(json.dumps({"name": "combined", "privacy": {"stages": stages}, **recorded}))
    result = pate_command(**run, query_source="synthetic", num_queries=None, mechanism="gnmax", sigma=1.0)
    privacy = result["privacy"]
    assert privacy["privacy_scope"] == "end_to_end" and privacy["unbounded_by"] == []
    assert privacy["epsilon_end_to_end"] > privacy["epsilon_labels"] > privacy["epsilon_data_independent"]
    assert [entry["name"] for entry in privacy["ledger"]] == [
        "public", "dp_hybrid", "pate", "gnmax(sigma=1)", "smooth_sensitivity_release"]

    stages[1] = contract_entry(stage="generator", name="per_teacher", reads_private_data=True, dp=False)
    (synthetic / "combined_metadata.json").write_text(json.dumps({"privacy": {"stages": stages}, **recorded}))
    result = pate_command(**run, query_source="synthetic", num_queries=None, mechanism="gnmax", sigma=1.0)
    assert result["privacy"]["privacy_scope"] == "labels_only_queries_not_private"
    assert result["privacy"]["epsilon_end_to_end"] is None
    assert result["privacy"]["unbounded_by"] == ["generator:per_teacher"]


def test_a_seeded_stage_before_the_votes_makes_the_run_not_private(run, tmp_path, capsys):
    synthetic = tmp_path / "run" / "synthetic"
    write_combined(synthetic, random_images(6), labels=[3] * 6)
    stages = [contract_entry(stage="generator", name="dp_hybrid", reads_private_data=True, dp=True,
                             rdp=[0.01 * order for order in DEFAULT_ORDERS], seeded=True),
              contract_entry(stage="selection", name="pate", reads_private_data=False, dp=False)]
    recorded = {"outputs": {"samples": {"sha256": sha256_file(synthetic / "combined_samples.pt")}}}  # as combine writes it
    (synthetic / "combined_metadata.json").write_text(json.dumps({"privacy": {"stages": stages}, **recorded}))
    privacy = pate_command(**run, query_source="synthetic", num_queries=None, mechanism="gnmax", sigma=1.0)["privacy"]
    # the votes' noise came from OS entropy, but the generator's did not: the whole run is not private
    assert privacy["noise_seed"] is None and privacy["private"] is False
    assert privacy["seeded_by"] == ["generator:dp_hybrid"] and "generator:dp_hybrid" in privacy["noise_seed_note"]
    assert privacy["privacy_scope"] == "end_to_end"  # the accounting stands; the guarantee does not
    table = capsys.readouterr().out
    assert "OS entropy" not in table and "NOT PRIVATE" in table and "generator:dp_hybrid" in table
    line = pate_lines(REPO / run["run_dir"])[0]
    assert "NOT PRIVATE (seeded: generator:dp_hybrid)" in line


def test_malformed_privacy_record_fails_before_any_output(run, tmp_path):
    synthetic = tmp_path / "run" / "synthetic"
    write_combined(synthetic, random_images(4))
    bad = {"privacy": {"stages": [{"stage": "generator", "name": "vae", "reads_private_data": True, "dp": True}]}}
    (synthetic / "combined_metadata.json").write_text(json.dumps(bad))
    with pytest.raises(PateError, match=r"combined_metadata.json: privacy.stages: .*no rdp"):
        pate_command(**run, query_source="synthetic", mechanism="gnmax", sigma=1.0)
    assert not (tmp_path / "run" / "pate").exists()


def test_run_report_prints_scope_and_seeded_runs_as_not_private(run):
    pate_command(**run, num_queries=5, mechanism="gnmax", sigma=0.1, seed=3)
    lines = pate_lines(REPO / run["run_dir"])
    assert len(lines) == 1 and "scope=labels" in lines[0] and "NOT PRIVATE" in lines[0]
    assert "conversion=balle2020" in lines[0] and "eps(released)=" in lines[0]


def test_un_noised_values_stay_in_private_and_print_only_on_request(run, capsys):
    pate_dir, private = REPO / run["run_dir"] / "pate", REPO / run["run_dir"] / "private"
    pate_command(**run, num_queries=5, mechanism="gnmax", sigma=0.1, seed=3)
    (private / "votes_mnist_test.pt").rename(pate_dir / "votes_mnist_test.pt")  # where runs before private/ kept it
    again = pate_command(**run, num_queries=5, mechanism="gnmax", sigma=0.1, seed=3)
    assert again["votes"]["rows_from_cache"] == 5  # the old cache was moved into private/ and used
    assert not [p.name for p in pate_dir.iterdir() if "votes" in p.name or "diagnostics" in p.name]
    assert {"votes_mnist_test.pt", "pate_diagnostics.json"} <= {p.name for p in private.iterdir()}
    assert "private/" not in (pate_dir / "report.json").read_text() and "votes_" not in (pate_dir / "report.json").read_text()
    table = capsys.readouterr().out
    assert "[diag]" not in table and "--diagnostics true" in table
    pate_command(**run, num_queries=5, mechanism="gnmax", sigma=0.1, seed=3, diagnostics=True)
    assert "[diag] plurality acc" in capsys.readouterr().out


def test_runs_from_before_the_split_move_to_the_diagnostics(run):
    pate_dir = REPO / run["run_dir"] / "pate"
    pate_dir.mkdir(parents=True)
    old = {"query_source": "mnist_test", "mechanism_description": "gnmax(sigma=40)", "queries_asked": 5000,
           "num_teachers": 250, "plurality_accuracy": 0.97, "privacy": {"epsilon_data_dependent": 3.86}}
    (pate_dir / "report.json").write_text(json.dumps({"runs": [old]}))
    pate_command(**run, num_queries=5, mechanism="gnmax", sigma=0.1, seed=3)
    assert [r["queries_asked"] for r in read_report(run)["runs"]] == [5]
    legacy = [r for r in read_diagnostics(run)["runs"] if r.get("legacy")]
    assert legacy == [{**old, "legacy": True, "not_for_release": True}]


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
        ({"seed": -1}, ValueError, "seed must be a non-negative int, or null"),
        ({"conversion": "tight"}, ValueError, "unknown conversion 'tight'"),
        ({"release": ReleaseSettings(order=16.0, beta=0.1)}, ValueError, r"release.beta must lie"),
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
    (REPO / run["run_dir"] / "private/votes_mnist_test.pt").unlink()
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
    diagnostic = json.loads((run_dir / "private" / "pate_diagnostics.json").read_text())["runs"][-1]
    assert diagnostic["plurality_accuracy"] > 0.6 and result["label_accuracy"] > 0.6
    assert result["student"]["sizes"]["test"] == 5000 and result["student"]["test_accuracy"] > 0.3
    assert result["votes"]["teacher_images_per_second"] > 0


def test_table_fits_120_columns_and_is_wide_on_request(run, capsys):
    settings = dict(num_queries=15, mechanism="confident_gnmax", threshold=2.0, sigma1=0.5, sigma2=40.0, seed=42)
    pate_command(**run, **settings)
    narrow = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in narrow) <= 120
    assert any("eps labels" in line for line in narrow) and any("[Confident-GNMax 2018]" in line for line in narrow)
    assert any("NOT PRIVATE" in line for line in narrow)  # a seeded run still says so
    assert not any("[diag]" in line for line in narrow)  # un-noised columns only on request
    pate_command(**run, **settings, wide=True, diagnostics=True)
    wide = capsys.readouterr().out.splitlines()
    assert wide[0].startswith("query source") and "[diag] agreement" in wide[0] and len(wide[0]) > 120
