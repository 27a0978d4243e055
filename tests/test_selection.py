import json

import pytest
import torch

from pate_lightning.candidates import selection
from pate_lightning.candidates.selection import (
    REASONS,
    class_quotas,
    nearest_neighbor_distances,
    select_candidates,
    to_report,
)

D = 784


def _unit(i: int) -> torch.Tensor:
    v = torch.zeros(D)
    v[i] = 1.0
    return v


def _far_shard() -> torch.Tensor:
    """Two shard images far (> 10) from anything built around 0.5 below."""
    return torch.stack([torch.zeros(D), torch.ones(D)])


def _select(images, labels, confidences, shard=None, **kwargs):
    shard = _far_shard() if shard is None else shard
    labels = torch.as_tensor(labels)
    confidences = torch.as_tensor(confidences, dtype=torch.float32)
    return select_candidates(torch.stack(images), labels, confidences, shard, **kwargs)


def _reason_names(result):
    return [REASONS[code] for code in result.reasons.tolist()]


def test_nearest_neighbor_distances_match_brute_force_and_copies_are_zero():
    g = torch.Generator().manual_seed(0)
    shard = torch.rand(23, 1, 28, 28, generator=g)
    candidates = torch.cat([torch.rand(30, 1, 28, 28, generator=g), shard[[4, 17]]])
    got = nearest_neighbor_distances(candidates, shard, chunk_size=7)  # chunks on both sides
    expected = torch.cdist(candidates.reshape(32, -1).double(), shard.reshape(23, -1).double()).min(1).values
    assert torch.allclose(got.double(), expected, atol=1e-4)
    assert got[-2:].max() < 1e-3


def test_nearest_neighbor_distances_rejects_bad_input():
    with pytest.raises(ValueError, match="empty"):
        nearest_neighbor_distances(torch.rand(3, D), torch.rand(0, D))
    with pytest.raises(ValueError, match="values per image"):
        nearest_neighbor_distances(torch.rand(3, D), torch.rand(2, 10))


def test_copy_of_shard_image_is_memorized_and_just_over_the_limit_passes():
    base = torch.full((D,), 0.5)
    shard = torch.stack([base, torch.zeros(D)])
    images = [base.clone(), base + 2.05 * _unit(0) / 2, base + 1.95 * _unit(1), base + 2.05 * _unit(2)]
    # second candidate: 1.025 away from the shard image -> memorized too
    result = _select(images, [0, 1, 2, 3], [0.99] * 4, shard, min_nn_distance=2.0, min_diversity_distance=0)
    assert _reason_names(result) == ["memorized", "memorized", "memorized", "kept"]
    assert result.kept_indices.tolist() == [3]
    assert abs(result.nn_distance["min"] - 2.05) < 1e-4


def test_confidence_threshold_and_rare_class_override():
    images = [torch.full((D,), 0.5) + 4 * _unit(i) for i in range(5)]
    labels = [0, 0, 3, 4, 3]
    confidences = [0.9, 0.89, 0.7, 0.7, 0.59]
    result = _select(images, labels, confidences, confidence_threshold=0.9, rare_class_thresholds={3: 0.6})
    assert _reason_names(result) == ["kept", "low_confidence", "kept", "low_confidence", "low_confidence"]
    with pytest.raises(ValueError, match="may only lower"):
        _select(images, labels, confidences, rare_class_thresholds={3: 0.95})


def test_quota_keeps_exactly_the_most_confident_diverse_candidates():
    base = torch.full((D,), 0.5)
    images = [base + 4 * _unit(0), base + 4 * _unit(0) + 0.5 * _unit(1), base + 4 * _unit(2), base + 4 * _unit(3)]
    confidences = [0.99, 0.98, 0.97, 0.96]  # index 1 is a near copy of index 0
    quotas = torch.tensor([2] + [5] * 9)
    result = _select(images, [0] * 4, confidences, quotas=quotas, min_per_class=0)
    assert result.kept_indices.tolist() == [0, 2]
    assert _reason_names(result) == ["kept", "diversity", "kept", "quota"]
    assert result.per_class_kept.tolist() == [2] + [0] * 9


@pytest.mark.parametrize("distance, kept", [(2.9, [1]), (3.1, [1, 0])])
def test_diversity_threshold_is_exact(distance, kept):
    base = torch.full((D,), 0.5)
    images = [base + distance * _unit(5), base]
    result = _select(images, [7, 7], [0.91, 0.95], min_diversity_distance=3.0)
    assert result.kept_indices.tolist() == kept
    disabled = _select(images, [7, 7], [0.91, 0.95], min_diversity_distance=0)
    assert disabled.kept_indices.tolist() == [1, 0]


def test_ties_in_confidence_keep_the_lower_index_and_results_repeat():
    base = torch.full((D,), 0.5)
    images = [base + 4 * _unit(0), base + 1.0 * _unit(9), base, base + 4 * _unit(1)]
    first = _select(images, [2, 2, 2, 2], [0.95] * 4)
    assert _reason_names(first) == ["kept", "kept", "diversity", "kept"]
    second = _select(images, [2, 2, 2, 2], [0.95] * 4)
    assert torch.equal(first.reasons, second.reasons) and torch.equal(first.kept_indices, second.kept_indices)


def test_counts_add_up_funnel_telescopes_and_shortfall_is_reported():
    g = torch.Generator().manual_seed(1)
    flat = torch.rand(300, D, generator=g) * 0.3 + 0.35  # pairwise distances around 3.4
    labels = torch.randint(0, 3, (300,), generator=g)
    confidences = torch.rand(300, generator=g)
    shard = torch.cat([flat[:10], torch.zeros(1, D)])  # some confident candidates are memorized
    quotas = torch.tensor([5, 500, 0] + [4] * 7)
    result = select_candidates(
        flat, labels, confidences, shard, confidence_threshold=0.3, quotas=quotas, min_per_class=90,
        min_diversity_distance=3.4,
    )
    assert len(result.kept_indices) + sum(result.rejected_by.values()) == 300
    assert all(count > 0 for count in result.rejected_by.values())
    assert [result.rejected_by[r] for r in REASONS[1:]] == [int((result.reasons == c).sum()) for c in range(1, 5)]
    funnel = result.funnel
    assert list(funnel) == ["pool", "confident", "non_memorized", "diverse", "kept"]
    steps = list(funnel.values())
    assert [a - b for a, b in zip(steps, steps[1:])] == [result.rejected_by[r] for r in REASONS[1:]]
    assert funnel["kept"] == len(result.kept_indices)
    # class 0 fills its quota of 5 (below min 90: no shortfall); class 1 falls short of 90;
    # a quota of 0 asks for nothing; absent classes miss their quota of 4
    kept = result.per_class_kept.tolist()
    assert kept[0] == 5 and 0 < kept[1] < 90 and kept[2] == 0
    assert result.shortfall == {1: 90 - kept[1], **{c: 4 for c in range(3, 10)}}
    assert result.kept_labels.tolist() == sorted(result.kept_labels.tolist())
    report = to_report(result)
    assert json.loads(json.dumps(report)) == report
    assert report["per_class"]["1"] == {"kept": kept[1], "quota": 500, "shortfall": 90 - kept[1]}


def test_bad_arguments_raise_value_error():
    images = [torch.full((D,), 0.5)]
    with pytest.raises(ValueError, match="labels must lie"):
        _select(images, [10], [0.99])
    with pytest.raises(ValueError, match="quotas"):
        _select(images, [1], [0.99], quotas=torch.tensor([3, 3]))
    with pytest.raises(ValueError, match="1 images"):
        _select(images, [1, 2], [0.99, 0.99])


def test_class_quotas_are_proportional_and_clamped():
    quotas = class_quotas({"0": 40, "1": 30, "2": 10, "3": 33, "4": 7}, min_per_class=150, max_per_class=500)
    # 500 * count / 40, halves up: 375, 125 -> 150, 412.5 -> 413, 87.5 -> 150; absent classes -> 150
    assert quotas.dtype == torch.long
    assert quotas.tolist() == [500, 375, 150, 413, 150, 150, 150, 150, 150, 150]
    counts = torch.tensor([24, 24, 12, 0, 6, 24, 30, 30, 30, 36])
    assert class_quotas(counts, min_per_class=0, max_per_class=100).tolist() == [67, 67, 33, 0, 17, 67, 83, 83, 83, 100]
    with pytest.raises(ValueError, match="min_per_class"):
        class_quotas(counts, min_per_class=600, max_per_class=500)
    with pytest.raises(ValueError, match="not all zero"):
        class_quotas(torch.zeros(10))
    with pytest.raises(ValueError, match="outside"):
        class_quotas({12: 3})


def _naive_select(flat, labels, confidences, shard, threshold, min_nn, quotas, min_div):
    """One candidate at a time, float64, no matmul tricks."""
    flat, shard = flat.double(), shard.double()
    reasons = ["kept"] * len(flat)
    kept_by_class = {c: [] for c in range(10)}
    order = sorted(range(len(flat)), key=lambda i: (-float(confidences[i]), i))
    for i in order:
        label = int(labels[i])
        if confidences[i] < threshold:
            reasons[i] = "low_confidence"
        elif (shard - flat[i]).norm(dim=1).min() < min_nn:
            reasons[i] = "memorized"
        elif quotas is not None and len(kept_by_class[label]) >= quotas[label]:
            reasons[i] = "quota"
        elif any((flat[i] - flat[j]).norm() < min_div for j in kept_by_class[label]):
            reasons[i] = "diversity"
        else:
            kept_by_class[label].append(i)
    return reasons, [i for c in range(10) for i in kept_by_class[c]]


@pytest.mark.parametrize("block", [16, 256])  # 16: most checks go against the kept set; 256: within a block
@pytest.mark.parametrize("quotas", [torch.tensor([30, 5, 80, 0, 200, 40, 40, 40, 1, 60]), None])
def test_blocked_walk_matches_naive_reference(quotas, block, monkeypatch):
    monkeypatch.setattr(selection, "_BLOCK", block)
    g = torch.Generator().manual_seed(3)
    prototypes = torch.rand(120, D, generator=g)
    cluster = torch.randint(0, 120, (2000,), generator=g)
    noise = 0.07 * (0.5 + torch.rand(2000, 1, generator=g))  # pairs inside a cluster straddle 3.0
    flat = (prototypes[cluster] + noise * torch.randn(2000, D, generator=g)).clamp(0, 1)
    shard = torch.cat([flat[:5] + 0.02, torch.rand(40, D, generator=g)])  # a few memorized candidates
    labels = cluster % 10
    confidences = (torch.rand(2000, generator=g) * 20).round() / 20  # many ties
    result = select_candidates(flat, labels, confidences, shard, confidence_threshold=0.5, quotas=quotas)
    reasons, kept = _naive_select(flat, labels, confidences, shard, 0.5, 2.0, quotas, 3.0)
    assert _reason_names(result) == reasons
    assert result.kept_indices.tolist() == kept
    assert min(result.rejected_by.values()) > 0 or quotas is None  # every rule is exercised


def test_screening_batches_then_selecting_survivors_equals_selecting_the_pool():
    """The generate stage's path (screen batch by batch, keep only survivors, select_survivors once) decides
    exactly what select_candidates decides over the whole pool, counts and funnel included."""
    g = torch.Generator().manual_seed(5)
    prototypes = torch.rand(60, D, generator=g)
    cluster = torch.randint(0, 60, (700,), generator=g)
    flat = (prototypes[cluster] + 0.06 * torch.randn(700, D, generator=g)).clamp(0, 1)
    shard = torch.cat([flat[:20] + 0.01, torch.rand(30, D, generator=g)])  # the first 20 are memorized
    labels = cluster % 10
    confidences = (torch.rand(700, generator=g) * 20).round() / 20
    quotas = torch.tensor([12, 3, 30, 0, 50, 8, 8, 8, 1, 20])
    thresholds = selection.Thresholds(0.4, {3: 0.3}, 2.0, 3.0, 5)
    whole = select_candidates(flat, labels, confidences, shard, confidence_threshold=0.4, rare_class_thresholds={3: 0.3},
                              min_nn_distance=2.0, quotas=quotas, min_per_class=5, min_diversity_distance=3.0)
    kept_rows, nn, screened_out = [], [], {"low_confidence": 0, "memorized": 0}
    for start in range(0, 700, 128):
        rows = torch.arange(start, min(start + 128, 700))
        reasons, distances = selection.screen(flat[rows], labels[rows], confidences[rows], shard, thresholds)
        screened_out["low_confidence"] += int((reasons == selection.LOW_CONFIDENCE).sum())
        screened_out["memorized"] += int((reasons == selection.MEMORIZED).sum())
        kept_rows.append(rows[reasons == selection.KEPT])
        nn.append(distances[reasons == selection.KEPT])
    survivors = torch.cat(kept_rows)
    part = selection.select_survivors(flat[survivors], labels[survivors], confidences[survivors], torch.cat(nn),
                                      thresholds=thresholds, quotas=quotas, screened_out=screened_out)
    assert survivors[part.kept_indices].tolist() == whole.kept_indices.tolist()
    assert part.rejected_by == whole.rejected_by and part.funnel == whole.funnel
    assert min(whole.rejected_by.values()) > 0  # every rule is exercised
    assert to_report(part) == to_report(whole)
