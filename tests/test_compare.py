"""``pate-lightning compare`` on two routes at toy size: a real-query PATE route and the DP-SGD baseline."""

import json

import pytest
import yaml

from pate_lightning.compare.privacy import composed_epsilon
from pate_lightning.pipeline.cli import cli_main
from tests.conftest import REPO
from tests.helpers import write_fake_mnist

QUIET = {"max_epochs": 1, "enable_progress_bar": False}


def toy_routes(tmp_path):
    """Two route configs in tmp_path/configs/routes: LNMax on public queries (classifiers in a shared folder,
    no generator stage) and the DP-SGD baseline; tiny data, one epoch."""
    data_dir = write_fake_mnist(tmp_path / "data", train=120, test=40)
    routes = tmp_path / "configs" / "routes"
    routes.mkdir(parents=True)
    (tmp_path / "configs" / "teacher_classifier.yaml").write_text((REPO / "configs/teacher_classifier.yaml").read_text())
    shared = {"data_dir": str(data_dir), "num_teachers": 4, "accelerator": "cpu", "devices": 1}
    lnmax = {**shared, "run_dir": str(tmp_path / "runs/lnmax"), "teacher_ids": [0, 1, 2],
             "stages": ["teacher_classifier", "pate"], "run_dirs": {"teacher_classifier": str(tmp_path / "runs/shared")},
             "teacher_classifier": {"trainer": QUIET},
             "pate": {"teachers_dir": str(tmp_path / "runs/shared/trained_nets"), "query_source": "mnist_test",
                      "mechanism": "lnmax", "gamma": 0.05, "num_queries": 10,
                      "student": {"epochs": 1, "batch_size": 8, "val_fraction": 0.0}}}
    baseline = {**shared, "run_dir": str(tmp_path / "runs/baseline"), "stages": ["dp_sgd_student"],
                "dp_sgd_student": {"dp_sgd": {"target_epsilon": 4.0, "epochs": 1, "batch_size": 20}}}
    (routes / "lnmax_toy.yaml").write_text(yaml.safe_dump(lnmax))
    (routes / "dp_sgd_toy.yaml").write_text(yaml.safe_dump(baseline))
    return routes


def test_compare_writes_results_table_and_picture_and_resumes(tmp_path):
    routes = toy_routes(tmp_path)
    out = tmp_path / "compare"
    argv = ["compare", "--routes", "lnmax_toy", "dp_sgd_toy", "--replicates", "2", "--out", str(out),
            "--routes_dir", str(routes)]
    cli_main(argv)
    results = json.loads((out / "results.json").read_text())
    rows = {row["name"]: row for row in results["routes"]}
    assert set(rows) == {"lnmax_toy", "dp_sgd_toy"}
    for row in rows.values():
        for key in ("name", "scope", "epsilon_end_to_end", "epsilon_labels", "student_accuracy_mean",
                    "student_accuracy_std", "public_only_accuracy", "replicates", "composed_epsilon"):
            assert key in row
        assert row["replicates"] == 2 and len(row["student_accuracy"]) == 2
        assert 0.0 <= row["student_accuracy_mean"] <= 1.0 and row["student_accuracy_std"] >= 0.0
        assert row["private"] is True  # no seed: OS-entropy noise
    lnmax, baseline = rows["lnmax_toy"], rows["dp_sgd_toy"]
    assert lnmax["scope"] == "labels" and lnmax["queries_asked"] == 10
    # two releases of the same labels cost more than one, and less than twice (RDP composes below linear in eps)
    assert lnmax["epsilon_labels"] < lnmax["composed_epsilon"] < 2 * lnmax["epsilon_labels"]
    assert baseline["scope"] == "end_to_end" and baseline["epsilon_labels"] is None
    assert baseline["epsilon_end_to_end"] <= 4.0 < baseline["composed_epsilon"]
    # classifiers trained once, in the shared folder; replicates reuse them and the first replicate's votes
    assert sorted(p.name for p in (tmp_path / "runs/shared/trained_nets").iterdir()) == ["0", "1", "2"]
    assert not (tmp_path / "runs/lnmax/trained_nets").exists()
    assert (out / "lnmax_toy/replicate_1/private/votes_mnist_test.pt").is_file()
    assert not list(out.glob("*/replicate_*/pate/votes_*.pt"))  # un-noised counts only under private/
    table = (out / "results.md").read_text()
    assert "| lnmax_toy |" in table and "| dp_sgd_toy |" in table and "`labels`" in table
    assert (out / "privacy_utility.png").read_bytes()[:4] == b"\x89PNG"

    # resumable: a finished replicate is not rerun (its report is untouched)
    report = out / "lnmax_toy/replicate_0/pate/report.json"
    before = report.stat().st_mtime_ns
    cli_main(argv)
    assert report.stat().st_mtime_ns == before
    assert json.loads((out / "results.json").read_text())["routes"][0]["student_accuracy"] == lnmax["student_accuracy"]


def test_composed_epsilon_of_one_replicate_is_the_reports_own():
    """The ledger recomputed from the public parameters gives back the report's epsilon for K = 1."""
    from pate_lightning.pate.aggregate import Mechanism, account
    import torch
    import numpy as np

    votes = torch.zeros(50, 10)
    votes[:, 3] = 250
    mechanism = Mechanism("confident_gnmax", 0.05, 40.0, 200.0, 150.0, 40.0).check()
    answered = torch.ones(50, dtype=torch.bool)
    accounting = account(votes, answered, mechanism, 1e-5, np.random.default_rng(0))
    from pate_lightning.privacy import end_to_end_privacy

    ledger = end_to_end_privacy("mnist_test", None, accounting.ledger_steps, 1e-5)
    run = {"mechanism": "confident_gnmax", "parameters": mechanism.parameters, "queries_asked": 50,
           "privacy": {**accounting.public, **ledger}}
    assert composed_epsilon([run], None, 1e-5, "balle2020") == pytest.approx(ledger["epsilon_labels"], rel=1e-9)
    assert composed_epsilon([run, run], None, 1e-5, "balle2020") > ledger["epsilon_labels"]
