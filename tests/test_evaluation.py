import json
import math

import pytest
import torch

from pate_lightning.evaluation.criteria import (
    CriteriaThresholds,
    agreement_rate,
    class_histogram_l1,
    diversity_ratio,
    evaluate_criteria,
    mean_pairwise_distance,
    min_nn_distance,
    summary_table,
)

TRIANGLE = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 4.0]])  # pair distances 5, 4, 3


def test_mean_pairwise_distance_hand_computed_and_image_shaped():
    assert mean_pairwise_distance(TRIANGLE) == pytest.approx(4.0, abs=1e-12)
    images = torch.zeros(2, 1, 28, 28)
    images[1, 0, 0, :4] = 1.0
    assert mean_pairwise_distance(images) == pytest.approx(2.0, abs=1e-12)
    with pytest.raises(ValueError, match="at least 2"):
        mean_pairwise_distance(TRIANGLE[:1])


def test_mean_pairwise_distance_subsamples_deterministically():
    x = torch.rand(50, 6, generator=torch.Generator().manual_seed(0))
    a = mean_pairwise_distance(x, max_samples=10, generator=torch.Generator().manual_seed(5))
    b = mean_pairwise_distance(x, max_samples=10, generator=torch.Generator().manual_seed(5))
    subset = x[torch.randperm(50, generator=torch.Generator().manual_seed(5))[:10]]
    assert a == b == pytest.approx(mean_pairwise_distance(subset), abs=1e-12)
    assert mean_pairwise_distance(x, max_samples=10) == mean_pairwise_distance(x, max_samples=10)
    assert mean_pairwise_distance(x, max_samples=50) == pytest.approx(
        torch.pdist(x.double()).mean().item(), abs=1e-12
    )


def test_diversity_ratio_and_min_nn_distance():
    shard = TRIANGLE * 2  # mean pairwise distance 8
    assert diversity_ratio(TRIANGLE, shard) == pytest.approx(0.5, abs=1e-12)
    assert min_nn_distance(torch.tensor([[1.0, 0.0], [6.0, 9.5], [3.0, 4.0]]), shard) == pytest.approx(1.0, abs=1e-6)
    assert min_nn_distance(shard[:1], shard) < 1e-3
    with pytest.raises(ValueError, match="identical"):
        diversity_ratio(TRIANGLE, torch.ones(3, 2))


def test_class_histogram_l1_from_labels_or_counts():
    synthetic = torch.tensor([0, 0, 1, 1])
    assert class_histogram_l1(synthetic, torch.tensor([0, 1, 0, 1, 1, 0])) == pytest.approx(0.0)
    assert class_histogram_l1(synthetic, {"0": 3, "1": 1}) == pytest.approx(0.5)  # |.5-.75| + |.5-.25|
    assert class_histogram_l1(synthetic, {2: 7}) == pytest.approx(2.0)
    assert class_histogram_l1([9, 9], [9], num_classes=10) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="empty"):
        class_histogram_l1(torch.tensor([], dtype=torch.long), synthetic)
    with pytest.raises(ValueError, match="0..9"):
        class_histogram_l1(torch.tensor([10]), synthetic)


def test_agreement_rate():
    assert agreement_rate(torch.tensor([1, 2, 3, 4]), torch.tensor([1, 2, 0, 4])) == 0.75
    with pytest.raises(ValueError, match="length"):
        agreement_rate(torch.tensor([1, 2]), torch.tensor([1]))


def test_evaluate_criteria_boundaries_and_all_passed():
    at_thresholds = evaluate_criteria(
        mean_confidence=0.9, diversity_ratio=0.75, min_nn_distance=1.0, class_histogram_l1=0.2
    )
    assert at_thresholds["mean_confidence"] == {"value": 0.9, "threshold": 0.9, "passed": True}
    assert at_thresholds["min_nn_distance"]["passed"] and at_thresholds["diversity_ratio"]["passed"]
    assert at_thresholds["class_histogram_l1"] == {"value": 0.2, "threshold": 0.2, "passed": False}  # strict <
    assert at_thresholds["all_passed"] is False
    assert "agreement_rate" not in at_thresholds

    good = dict(mean_confidence=0.95, diversity_ratio=0.8, min_nn_distance=3.2, class_histogram_l1=0.05)
    report = evaluate_criteria(**good, agreement_rate=0.4)
    assert report["agreement_rate"] == {"value": 0.4, "threshold": None, "passed": None}
    assert report["all_passed"] is True
    assert list(report) == [
        "mean_confidence", "diversity_ratio", "min_nn_distance", "class_histogram_l1", "agreement_rate", "all_passed"
    ]
    strict = evaluate_criteria(**good, agreement_rate=0.4, thresholds=CriteriaThresholds(agreement_rate=0.5))
    assert strict["agreement_rate"]["passed"] is False and strict["all_passed"] is False
    with pytest.raises(ValueError, match="agreement_rate"):
        evaluate_criteria(**good, thresholds=CriteriaThresholds(agreement_rate=0.5))


def test_evaluate_criteria_nan_is_reported_as_none_and_fails():
    report = evaluate_criteria(
        mean_confidence=math.nan, diversity_ratio=0.8, min_nn_distance=2.0, class_histogram_l1=0.1
    )
    assert report["mean_confidence"] == {"value": None, "threshold": 0.9, "passed": False}
    assert json.loads(json.dumps(report)) == report


def test_summary_table_rows_and_pass_counts():
    good = evaluate_criteria(mean_confidence=0.95, diversity_ratio=0.8, min_nn_distance=3.2, class_histogram_l1=0.05)
    bad = evaluate_criteria(mean_confidence=0.85, diversity_ratio=0.9, min_nn_distance=0.4, class_histogram_l1=0.05)
    lines = summary_table({7: bad, 2: good}).splitlines()
    assert len(lines) == 4
    assert lines[0].split() == [
        "teacher", "mean_confidence", "diversity_ratio", "min_nn_distance", "class_histogram_l1", "all"
    ]
    assert lines[1].split() == ["2", "0.950", "PASS", "0.800", "PASS", "3.200", "PASS", "0.050", "PASS", "PASS"]
    assert lines[2].split() == ["7", "0.850", "FAIL", "0.900", "PASS", "0.400", "FAIL", "0.050", "PASS", "FAIL"]
    assert lines[3] == (
        "teachers passing: mean_confidence 1/2, diversity_ratio 2/2, min_nn_distance 1/2, "
        "class_histogram_l1 2/2, all 1/2"
    )
    values = {name: good[name]["value"] for name in ["mean_confidence", "diversity_ratio", "min_nn_distance"]}
    with_agreement = summary_table({0: evaluate_criteria(**values, class_histogram_l1=0.05, agreement_rate=0.97)})
    assert "0.970 -" in with_agreement and "agreement_rate -" in with_agreement
