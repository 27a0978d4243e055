"""The student inside ``pate``: protocol splits, and no true label of the query pool ever reaches it."""

import json

import numpy as np
import pytest
import torch

from pate_lightning.data.sources import load_split, write_mnist_idx
from pate_lightning.pate.command import pate_command
from pate_lightning.pate.queries import holdout_set, mnist_test_queries, protocol_split, votes_name
from pate_lightning.pate.student_training import StudentSettings
from tests.helpers import write_fake_mnist
from tests.pate_helpers import write_teachers

FIXMATCH = StudentSettings(epochs=2, batch_size=4, val_fraction=0.0, architecture="small_cnn", method="fixmatch",
                           mu=2, threshold=0.0, ema_decay=0.5)


def poisoned_copy(data_dir, out_dir, split: int):
    """The same MNIST files, except that every test label of the query pool (index < split) is wrong."""
    arrays = {}
    for train in (True, False):
        images, labels = load_split("mnist", data_dir, train=train)
        prefix = "train" if train else "test"
        arrays[f"{prefix}_images"], arrays[f"{prefix}_labels"] = images.numpy(), labels.numpy().astype(np.uint8)
    arrays["test_labels"][:split] = (arrays["test_labels"][:split] + 1) % 10
    write_mnist_idx(arrays, out_dir)
    return out_dir


@pytest.mark.parametrize("protocol, pool, held_out", [("half", 20, 20), ("papers", 36, 4)])
def test_protocol_splits_are_disjoint_and_sized(tmp_path, protocol, pool, held_out):
    data_dir = write_fake_mnist(tmp_path / "data", train=10, test=40)
    queries, (test_images, test_labels) = mnist_test_queries(data_dir, protocol), holdout_set(data_dir, protocol)
    assert len(queries) == pool and len(test_images) == len(test_labels) == held_out
    # the fake test labels are index % 10 and every image is distinct: the two parts partition the test set
    everything = torch.cat([queries.images, test_images]).flatten(1)  # (40, 784)
    assert len(torch.unique(everything, dim=0)) == 40
    assert torch.equal(torch.cat([queries.truth, test_labels]), torch.arange(40) % 10)


def test_protocol_sizes_on_mnist():
    assert (protocol_split(10_000, "half"), protocol_split(10_000, "papers")) == (5000, 9000)
    assert votes_name("mnist_test", "papers") == "mnist_test_papers" and votes_name("mnist_test", "half") == "mnist_test"
    assert votes_name("synthetic", "papers") == "synthetic"
    with pytest.raises(ValueError, match="unknown protocol 'thirds'"):
        protocol_split(10, "thirds")


@pytest.mark.integration
def test_real_mnist_protocols(mnist_dir):
    for protocol, pool in (("half", 5000), ("papers", 9000)):
        queries, test = mnist_test_queries(mnist_dir, protocol), holdout_set(mnist_dir, protocol)
        assert len(queries) == pool and len(test[0]) == 10_000 - pool


def test_true_labels_of_the_query_pool_never_reach_the_student(tmp_path):
    """Poison every true label of the query pool, answered or not: the student trains and scores identically."""
    clean = write_fake_mnist(tmp_path / "clean", train=10, test=40)
    poisoned = poisoned_copy(clean, tmp_path / "poisoned", split=36)
    runs = []
    for name, data_dir in (("clean", clean), ("poisoned", poisoned)):
        run_dir = tmp_path / name / "run"
        write_teachers(run_dir / "trained_nets", [0, 1, 2], favourites=[3, 3, 7])
        # noisy threshold: max vote 2 + N(0, 1) >= 2 answers about half of the 24 asked; 12 more are never asked
        runs.append(pate_command(run_dir=str(run_dir), data_dir=str(data_dir), protocol="papers", num_queries=24,
                                 mechanism="confident_gnmax", threshold=2.0, sigma1=1.0, sigma2=0.1,
                                 student=FIXMATCH, accelerator="cpu", seed=7))
    clean_run, poisoned_run = runs
    assert 0 < clean_run["queries_answered"] < 24  # some asked queries stay unanswered
    assert clean_run["label_accuracy"] != poisoned_run["label_accuracy"]  # the poison is there
    assert clean_run["student"]["sizes"] == {"train": clean_run["queries_answered"], "val": 0, "test": 4,
                                             "unlabeled": 36}
    # the same answers, the same student: loss, mask rate, accuracy, per class
    keys = ("steps", "final_train_loss", "final_mask_rate", "test_accuracy", "test_accuracy_per_class")
    assert {k: clean_run["student"][k] for k in keys} == {k: poisoned_run["student"][k] for k in keys}
    assert clean_run["protocol"] == "papers" and clean_run["student_method"] == "fixmatch"
    report = json.loads((tmp_path / "clean/run/pate/report.json").read_text())
    assert report["runs"][0]["student"]["test_set"] == "the last 4 MNIST test images (never queried)"
    assert (tmp_path / "clean/run/private/votes_mnist_test_papers.pt").is_file()
