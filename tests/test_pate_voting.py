import math
from pathlib import Path

import numpy as np
import pytest
import torch

from pate_lightning.errors import PateError
from pate_lightning.pate.aggregate import Mechanism, account, aggregate, check_delta
from pate_lightning.pate.queries import QuerySet, check_images, select_queries, synthetic_queries
from pate_lightning.pate.voting import cached_votes, check_teachers, count_votes, find_teachers
from pate_lightning.privacy import UNANSWERED
from pate_lightning.classifiers.loading import load_classifier, normalization_from_name
from tests.pate_helpers import random_images, write_combined, write_teachers


def test_votes_of_biased_teachers_are_exact(tmp_path):
    teachers = write_teachers(tmp_path / "nets", [0, 1, 2, 5], favourites=[3, 3, 7, 0])
    votes = count_votes(teachers, [0, 1, 2, 5], random_images(6), teacher_chunk=3, batch_size=4)
    assert votes.dtype == torch.long and votes.shape == (6, 10)
    expected = torch.zeros(10, dtype=torch.long)
    expected[3], expected[7], expected[0] = 2, 1, 1
    assert torch.equal(votes, expected.expand(6, 10))


def test_votes_match_a_loop_over_single_teachers(tmp_path):
    ids = [0, 1, 2, 3, 4]
    teachers = write_teachers(tmp_path / "nets", ids, seed=7)
    images = random_images(9, seed=1)
    normalize = normalization_from_name("mnist")
    expected = torch.zeros(9, 10, dtype=torch.long)
    with torch.no_grad():
        for teacher_id in ids:
            predicted = load_classifier(teachers, teacher_id)(normalize(images)).argmax(1)  # (9,)
            expected[torch.arange(9), predicted] += 1
    # chunks of 2 teachers (the last chunk has one) and batches of 4 images give the same counts
    assert torch.equal(count_votes(teachers, ids, images, "mnist", teacher_chunk=2, batch_size=4), expected)


def test_cache_counts_only_new_rows_and_is_keyed_by_teachers(tmp_path):
    teachers = write_teachers(tmp_path / "nets", [0, 1, 2], favourites=[1, 1, 2])
    images, cache = random_images(8), tmp_path / "pate" / "votes_mnist_test.pt"
    first = cached_votes(cache, teachers, [0, 1, 2], images, torch.arange(4))
    assert first.computed == 4 and cache.is_file() and first.teacher_images_per_second > 0
    again = cached_votes(cache, teachers, [0, 1, 2], images, torch.arange(6))
    assert again.computed == 2 and torch.equal(again.votes[:4], first.votes)
    assert cached_votes(cache, teachers, [0, 1, 2], images, torch.tensor([1, 5])).computed == 0
    write_teachers(teachers, [2], favourites=[4])  # a retrained teacher: the votes are recounted
    changed = cached_votes(cache, teachers, [0, 1, 2], images, torch.arange(2))
    assert changed.computed == 2 and changed.votes[0, 4] == 1
    fewer = cached_votes(cache, teachers, [0, 1], images, torch.arange(2))
    assert fewer.computed == 2 and int(fewer.votes[0].sum()) == 2


def test_cache_whose_votes_do_not_match_the_teachers_is_an_error(tmp_path):
    teachers = write_teachers(tmp_path / "nets", [0, 1], favourites=[1, 2])
    images, cache = random_images(3), tmp_path / "votes_synthetic.pt"
    cached_votes(cache, teachers, [0, 1], images, torch.arange(3))
    content = torch.load(cache, weights_only=True)
    content["votes"][1, 5] += 1  # a row with 3 votes from 2 teachers
    torch.save(content, cache)
    with pytest.raises(PateError, match=r"votes_synthetic.pt: .*not the 2 teachers"):
        cached_votes(cache, teachers, [0, 1], images, torch.arange(3))
    cache.write_bytes(b"not a torch file")
    with pytest.raises(PateError, match="vote cache cannot be read"):
        cached_votes(cache, teachers, [0, 1], images, torch.arange(3))


def test_teacher_discovery_and_missing_teachers(tmp_path):
    teachers = write_teachers(tmp_path / "nets", [3, 0, 11])
    (teachers / "notes").mkdir()
    assert find_teachers(teachers) == [0, 3, 11]
    with pytest.raises(PateError, match=r"no classifier for teachers \[4\]"):
        check_teachers(teachers, [0, 4])
    with pytest.raises(ValueError, match="more than once"):
        check_teachers(teachers, [0, 0])
    with pytest.raises(PateError, match="teachers folder not found"):
        find_teachers(tmp_path / "missing")


@pytest.mark.parametrize(
    "images, message",
    [
        (torch.rand(4, 28, 28), r"shape \(4, 28, 28\)"),
        (torch.rand(4, 3, 28, 28), r"shape \(4, 3, 28, 28\)"),
        (torch.rand(0, 1, 28, 28), r"shape \(0, 1, 28, 28\)"),
        ((torch.rand(4, 1, 28, 28) - 0.1307) / 0.3081, r"pixel values span \[-0.42.*not normalized"),
        ((torch.rand(4, 1, 28, 28) * 255).to(torch.uint8), "torch.uint8 tensor"),
        (torch.full((2, 1, 28, 28), math.nan), "NaN"),
        ({"images": torch.rand(4, 1, 28, 28)}, "holds a dict, not a tensor"),
    ],
)
def test_bad_query_images_name_the_file(tmp_path, images, message):
    samples = write_combined(tmp_path / "synthetic", images)
    with pytest.raises(PateError, match=rf"combined_samples.pt: .*{message}"):
        synthetic_queries(samples)


def test_synthetic_labels_must_belong_to_the_samples(tmp_path):
    samples = write_combined(tmp_path, random_images(4), labels=[1, 2, 3, 4])
    assert synthetic_queries(samples).generator_labels.tolist() == [1, 2, 3, 4]
    write_combined(tmp_path, random_images(5), labels=[1, 2, 3, 4])
    with pytest.raises(PateError, match=r"combined_labels.csv: has 4 rows for 5 samples"):
        synthetic_queries(samples)
    write_combined(tmp_path, random_images(2), labels=[1, 12])
    with pytest.raises(PateError, match="labels outside 0..9"):
        synthetic_queries(samples)
    (tmp_path / "combined_labels.csv").unlink()
    assert synthetic_queries(samples).generator_labels is None
    assert check_images(random_images(2), samples).shape == (2, 1, 28, 28)


def test_query_selection():
    mnist = QuerySet("mnist_test", Path("data"), random_images(10))
    assert select_queries(mnist, 4, seed=0).tolist() == [0, 1, 2, 3]
    assert select_queries(mnist, None, seed=0).tolist() == list(range(10))
    synthetic = QuerySet("synthetic", Path("combined_samples.pt"), random_images(10))
    subset = select_queries(synthetic, 4, seed=5)
    assert torch.equal(subset, select_queries(synthetic, 4, seed=5)) and len(set(subset.tolist())) == 4
    assert not torch.equal(subset, select_queries(synthetic, 4, seed=6))
    with pytest.raises(ValueError, match="num_queries=11 exceeds the 10 queries of synthetic"):
        select_queries(synthetic, 11, seed=0)


@pytest.mark.parametrize(
    "mechanism, teachers, message",
    [
        (Mechanism("lnmax", gamma=0.0), None, "gamma must be a finite number > 0"),
        (Mechanism("gnmax", sigma=-1.0), None, "sigma must be a finite number > 0"),
        (Mechanism("confident_gnmax", sigma1=math.inf), None, "sigma1 must be"),
        (Mechanism("confident_gnmax", threshold=-1.0), None, "threshold must be a finite number >= 0"),
        (Mechanism("confident_gnmax", threshold=200.0), 3, "threshold=200 exceeds the 3 teachers"),
        (Mechanism("laplace"), None, "unknown mechanism 'laplace'"),
    ],
)
def test_bad_mechanism_settings(mechanism, teachers, message):
    with pytest.raises(ValueError, match=message):
        mechanism.check(teachers)


def test_unused_parameters_are_not_checked():
    assert Mechanism("lnmax", sigma=-1.0).check(10).parameters == {"gamma": 0.05}
    assert Mechanism().describe() == "confident_gnmax(T=200, sigma1=150, sigma2=40)"


@pytest.mark.parametrize("delta", [0.0, 1.0, -1e-5, 2, True])
def test_delta_must_lie_in_the_open_unit_interval(delta):
    with pytest.raises(ValueError, match=r"delta must lie in \(0, 1\)"):
        check_delta(delta)


def unanimous_votes(queries: int, teachers: int = 250) -> torch.Tensor:
    votes = torch.zeros(queries, 10, dtype=torch.long)
    votes[:, 3] = teachers
    return votes


def test_aggregation_is_seeded_and_confident_gnmax_declines_split_votes():
    votes = unanimous_votes(4)
    votes[2] = torch.tensor([25] * 10)  # no consensus: never reaches T = 200
    mechanism = Mechanism("confident_gnmax", threshold=200, sigma1=1.0, sigma2=1.0)
    labels, answered = aggregate(votes, mechanism, torch.Generator().manual_seed(0), num_teachers=250)
    assert answered.tolist() == [True, True, False, True]
    assert labels.tolist() == [3, 3, UNANSWERED, 3]
    split = torch.full((50, 10), 25)  # every class tied: the noise alone decides
    one = aggregate(split, Mechanism("gnmax", sigma=40), torch.Generator().manual_seed(1), num_teachers=250)
    two = aggregate(split, Mechanism("gnmax", sigma=40), torch.Generator().manual_seed(1), num_teachers=250)
    assert torch.equal(one[0], two[0]) and one[1].all() and len(one[0].unique()) > 1
    with pytest.raises(ValueError, match="num_teachers=100"):
        aggregate(unanimous_votes(2), Mechanism("lnmax"), torch.Generator(), num_teachers=100)


def test_accounting_splits_publishable_values_from_diagnostics():
    votes = unanimous_votes(100)
    rng = np.random.default_rng(0)
    lnmax_run = account(votes, torch.ones(100, dtype=torch.bool), Mechanism("lnmax", gamma=0.05), 1e-5, rng)
    privacy, diagnostics = lnmax_run.public, lnmax_run.diagnostics
    assert privacy["num_queries"] == 100 and privacy["delta"] == 1e-5 and privacy["accountant"] == "RDP"
    # 100 LNMax queries at gamma 0.05 with unanimous teachers: a small data-dependent, ~5 data-independent epsilon
    assert diagnostics["epsilon_data_dependent"] < 0.5 < 4 < privacy["epsilon_data_independent"] < 6
    assert privacy["data_dependent_released"] is False and "not itself privately released" in privacy["note"]
    assert privacy["release"] is None and privacy["epsilon_data_dependent_released"] is None
    assert [step["name"] for step in lnmax_run.ledger_steps] == ["lnmax(gamma=0.05)"]
    answered = torch.tensor([True] * 60 + [False] * 40)
    cgn = account(votes, answered, Mechanism(), 1e-5, rng)
    assert cgn.public["num_queries"] == 100 and cgn.public["num_answered"] == 60
    assert cgn.public["data_dependent_released"] is True and "smooth sensitivity" in cgn.public["note"]
    # a priori every asked query pays GNMax too; the realised count is smaller and only labelled beside it
    assert cgn.public["epsilon_data_independent_answered_only"] < cgn.public["epsilon_data_independent"]
    assert cgn.diagnostics["release_fixed"]["epsilon"] >= cgn.diagnostics["epsilon_data_dependent"]
    assert cgn.diagnostics["release_data_chosen"]["parameters_fixed"] is False
    assert set(cgn.public["release"]) == {"order", "beta", "sigma_ss", "rdp_release", "delta", "conversion"}
    assert [step["name"] for step in cgn.ledger_steps][1] == "smooth_sensitivity_release"
    again = account(votes, answered, Mechanism(), 1e-5, np.random.default_rng(3))
    assert again.public == account(votes, answered, Mechanism(), 1e-5, np.random.default_rng(3)).public
    with pytest.raises(ValueError, match="delta must lie"):
        account(votes, answered, Mechanism(), 1.5, rng)
    with pytest.raises(ValueError, match="unknown conversion"):
        account(votes, answered, Mechanism(), 1e-5, rng, conversion="tight")
