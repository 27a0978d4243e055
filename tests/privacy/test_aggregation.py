import math

import pytest
import torch

from pate_lightning.privacy import UNANSWERED, analysis, confident_gnmax, gnmax, lnmax, vote_counts


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _clear_votes(num_queries: int = 200, num_teachers: int = 250, num_classes: int = 10) -> torch.Tensor:
    # Random histograms with a unique plurality, well separated or not.
    predictions = torch.randint(num_classes, (num_teachers, num_queries), generator=_generator(1))
    plurality = torch.randint(num_classes, (num_queries,), generator=_generator(2))
    agree = torch.rand(num_teachers, num_queries, generator=_generator(3)) < 0.5
    return vote_counts(torch.where(agree, plurality, predictions), num_classes)  # (Q, C)


def test_vote_counts_matches_a_loop():
    predictions = torch.randint(4, (7, 5), generator=_generator())
    counts = vote_counts(predictions, 4)
    assert counts.shape == (5, 4) and counts.dtype == torch.long
    for query in range(5):
        for label in range(4):
            assert counts[query, label] == (predictions[:, query] == label).sum()
    assert torch.all(counts.sum(dim=1) == 7)


@pytest.mark.parametrize("mechanism", ["lnmax", "gnmax", "confident_gnmax"])
def test_seeded_determinism(mechanism):
    votes = torch.tensor([[120, 110, 20], [90, 80, 80], [125, 125, 0]] * 20)  # ambiguous, so noise matters

    def run(seed):
        if mechanism == "lnmax":
            return lnmax(votes, 0.1, _generator(seed), num_teachers=250)
        if mechanism == "gnmax":
            return gnmax(votes, 40.0, _generator(seed), num_teachers=250)
        return confident_gnmax(votes, 100.0, 30.0, 40.0, _generator(seed), num_teachers=250).labels

    assert torch.equal(run(0), run(0))
    assert not torch.equal(run(0), run(1))


def test_noise_free_limit_returns_argmax():
    votes = _clear_votes()
    assert torch.equal(gnmax(votes, 1e-6, _generator()), votes.argmax(dim=1))
    assert torch.equal(lnmax(votes, 1e6, _generator()), votes.argmax(dim=1))
    labels, answered = confident_gnmax(votes, 0.0, 1e-6, 1e-6, _generator())
    assert answered.all() and torch.equal(labels, votes.argmax(dim=1))


@pytest.mark.parametrize("mechanism, scale", [("gnmax", 5.0), ("lnmax", 0.2)])
def test_error_rate_respects_the_analysis_bound(mechanism, scale):
    votes = torch.tensor([[20, 15, 10]] * 20000)
    if mechanism == "gnmax":
        labels, logq = gnmax(votes, scale, _generator()), analysis.compute_logq_gnmax([20, 15, 10], scale)
    else:
        labels, logq = lnmax(votes, scale, _generator()), analysis.compute_logq_lnmax([20, 15, 10], scale)
    error_rate = (labels != 0).double().mean().item()
    assert 0.05 < error_rate <= math.exp(logq)  # noise is there, and the union bound holds


def test_ties_are_broken_evenly():
    labels = gnmax(torch.tensor([[5, 5]] * 20000), 1.0, _generator())
    assert abs(labels.double().mean().item() - 0.5) < 0.02


def test_confident_gnmax_answers_only_clear_consensus():
    votes = torch.tensor([[240, 5, 5], [100, 80, 70], [230, 20, 0], [125, 125, 0]] * 50)  # (200, 3)
    labels, answered = confident_gnmax(votes, 200.0, 5.0, 40.0, _generator(), num_teachers=250)
    clear = votes.max(dim=1).values >= 230
    assert torch.equal(answered, clear)  # 6 sigma1 away from the threshold either way
    assert torch.all(labels[~answered] == UNANSWERED)
    assert torch.all(labels[answered] == 0)  # gaps of 210+ votes against sigma2 = 40


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: vote_counts(torch.tensor([0, 1]), 2), "teachers, queries"),
        (lambda: vote_counts(torch.tensor([[0, 3]]), 3), r"\[0, 3\)"),
        (lambda: vote_counts(torch.tensor([[0.0, 1.0]]), 2), "integer"),
        (lambda: vote_counts(torch.tensor([[0, 1]]), 1), "num_classes"),
        (lambda: gnmax(torch.tensor([3, 2]), 1.0, _generator()), "queries, classes"),
        (lambda: gnmax(torch.tensor([[3], [2]]), 1.0, _generator()), "at least 2 classes"),
        (lambda: gnmax(torch.tensor([[3, -1]]), 1.0, _generator()), "non-negative"),
        (lambda: gnmax(torch.tensor([[3.0, float("nan")]]), 1.0, _generator()), "finite"),
        (lambda: gnmax(torch.tensor([[3, 2], [4, 2]]), 1.0, _generator(), num_teachers=5), "sum to num_teachers=5"),
        (lambda: gnmax(torch.tensor([[3, 2]]), 0.0, _generator()), "sigma"),
        (lambda: lnmax(torch.tensor([[3, 2]]), -1.0, _generator()), "gamma"),
        (lambda: confident_gnmax(torch.tensor([[3, 2]]), 6.0, 1.0, 1.0, _generator()), "threshold"),
        (lambda: confident_gnmax(torch.tensor([[3, 2]]), -1.0, 1.0, 1.0, _generator()), "threshold"),
        (lambda: confident_gnmax(torch.tensor([[3, 2]]), 2.0, 0.0, 1.0, _generator()), "sigma1"),
        (lambda: confident_gnmax(torch.tensor([[3, 2]]), 2.0, 1.0, -1.0, _generator()), "sigma2"),
    ],
)
def test_bad_input_raises(call, message):
    with pytest.raises(ValueError, match=message):
        call()
