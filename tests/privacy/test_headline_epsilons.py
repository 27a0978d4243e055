import json

import pytest

from experiments.headline_epsilons import main


def test_headline_epsilons_reproduce_the_old_figures_and_the_a_priori_bound(tmp_path):
    result = main(["--out", str(tmp_path / "headline.json")])
    rows = {row["row"]: row for row in result["rows"]}
    full = rows["mnist_test, 5,000 asked"]
    # the README's old data-independent figures (answered only, classic) and the a-priori 15.46
    assert full["old_realised_classic"] == pytest.approx(11.32, abs=0.005)
    assert rows["synthetic, all 4,015 pooled"]["old_realised_classic"] == pytest.approx(10.30, abs=0.005)
    assert full["a_priori_classic"] == pytest.approx(15.46, abs=0.005)
    for row in result["rows"]:
        assert row["new_a_priori_balle2020"] <= row["a_priori_classic"]
        assert row["realised_balle2020"] <= row["new_a_priori_balle2020"]
    assert json.loads((tmp_path / "headline.json").read_text())["rows"] == result["rows"]
