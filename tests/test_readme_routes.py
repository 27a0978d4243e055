"""docs/results.md's table is what ``compare --from_results docs/results/routes.json --docs`` renders, and
routes.json is what the package's code assembles from the committed measurements (so neither can drift)."""

import json

import pytest

from experiments.readme_routes import routes_document
from pate_lightning.compare.command import render_results
from pate_lightning.compare.results import route_row
from pate_lightning.pipeline.cli import cli_main
from pate_lightning.privacy.dp_sgd_accounting import dp_sgd_privacy_entry
from tests.conftest import REPO

ROUTES = REPO / "docs/results/routes.json"
START = "<!-- routes table: pate-lightning compare --from_results docs/results/routes.json --docs -->\n"
END = "<!-- end of routes table -->"


def test_results_doc_table_is_the_rendered_routes_json():
    page = (REPO / "docs/results.md").read_text()
    assert START in page and END in page
    block = page.split(START, 1)[1].split(END, 1)[0]
    assert block == render_results(ROUTES, docs=True)
    assert "docs/results.md" in (REPO / "README.md").read_text()  # README points to it


def test_routes_json_is_assembled_from_the_committed_measurements(monkeypatch):
    monkeypatch.chdir(REPO)
    assert json.loads(ROUTES.read_text()) == json.loads(json.dumps(routes_document()))


def test_every_route_row_names_its_config_and_source():
    results = json.loads(ROUTES.read_text())
    routes = {row["name"]: row for row in results["routes"]}
    for row in routes.values():
        assert row["rerun_by_compare"] is False and (REPO / row["source"]).is_file()
        config = row["command"].split("--config ")[-1]
        assert not config.endswith(".yaml") or (REPO / config).is_file()
    assert routes["dp_sgd_hybrid"]["scope"] == "end_to_end_settings_tuned_on_private_data"
    assert [r["name"] for r in results["not_yet_measured"]] == [f"dp_sgd_student_eps{e}" for e in (1, 2, 4, 8)]


def test_composed_epsilon_of_a_tuned_dp_route_charges_its_generator_and_names_its_scope():
    run = {"mechanism": "lnmax", "parameters": {"gamma": 0.05}, "queries_asked": 50, "queries_answered": 50,
           "privacy": {"private": True, "delta": 1e-5, "conversion": "balle2020", "epsilon_labels": 1.0,
                       "epsilon_end_to_end": 2.0, "privacy_scope": "end_to_end_settings_tuned_on_private_data"},
           "student": {"test_accuracy": 0.9}}
    generator = [dp_sgd_privacy_entry(2.0, 0.5, 20, "hybrid", "DP-SGD per teacher")]
    row = route_row("tuned", [run], generator, {}, "cpu")
    assert row["composed_epsilon_covers"] == "end_to_end_settings_tuned_on_private_data"
    assert row["composed_epsilon"] > row["composed_epsilon_labels"]  # the generator's epsilon is spent too


def test_from_results_names_a_file_that_is_not_results(tmp_path, capsys):
    bad = tmp_path / "results.json"
    bad.write_text(json.dumps({"rows": []}))
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["compare", "--from_results", str(bad)])
    assert exit_info.value.code == 2
    assert str(bad) in capsys.readouterr().err
