import pytest
import torch
from lightning.pytorch import Trainer, seed_everything

from pate_lightning.pate.student import StudentModule
from pate_lightning.pate.student_data import StudentDataModule
from pate_lightning.pate.student_nets import ARCHITECTURES


def separable_digits(count: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Images whose label is the row band lit up: learnable in a few steps."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(count) % 10
    images = torch.rand(count, 1, 28, 28, generator=generator) * 0.1
    for i, label in enumerate(labels.tolist()):
        images[i, 0, 2 * label + 4 : 2 * label + 6, 4:24] = 1.0
    return images, labels


def trainer(tmp_path, **kwargs):
    defaults = dict(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    return Trainer(**{**defaults, **kwargs})


def test_fast_dev_run_trains_validates_and_tests(tmp_path):
    images, labels = separable_digits(40)
    data = StudentDataModule(images, labels, images[:20], labels[:20], batch_size=8, val_fraction=0.25, augment=True)
    model = StudentModule()
    trainer(tmp_path, fast_dev_run=True).fit(model, datamodule=data)
    metrics = trainer(tmp_path, fast_dev_run=True).test(model, datamodule=data, verbose=False)[0]
    assert 0 <= metrics["test/acc"] <= 1
    assert len(model.test_accuracy_per_class) == 10
    assert {f"test/acc_class_{c}" for c in range(10)} <= set(metrics)
    assert data.sizes == {"train": 30, "val": 10, "test": 20}


@pytest.mark.parametrize("architecture", ["ucstub", "small_cnn"])
def test_the_channels_last_network_computes_what_the_plain_one_does(architecture):
    seed_everything(0, verbose=False)
    model = StudentModule(architecture=architecture).eval()
    plain = ARCHITECTURES[architecture]().eval()
    plain.load_state_dict(model.net.state_dict())  # contiguous copies of the same weights
    images = separable_digits(6)[0]
    with torch.no_grad():
        assert torch.allclose(model(images), plain(model.normalize(images)), atol=1e-5)


def test_student_learns_and_per_class_accuracy_is_consistent(tmp_path):
    seed_everything(0, verbose=False)
    images, labels = separable_digits(200)
    test_images, test_labels = separable_digits(100, seed=1)
    data = StudentDataModule(images, labels, test_images, test_labels, batch_size=32, val_fraction=0.0)
    model = StudentModule(lr=3e-3)
    fit = trainer(tmp_path, max_epochs=3)  # no validation split: the loop is skipped
    fit.fit(model, datamodule=data)
    metrics = trainer(tmp_path).test(model, datamodule=data, verbose=False)[0]
    assert metrics["test/acc"] > 0.9
    # the test classes are balanced, so overall accuracy is the mean of the per-class accuracies
    assert sum(model.test_accuracy_per_class) / 10 == pytest.approx(metrics["test/acc"], abs=1e-6)


def test_split_is_seeded_and_disjoint():
    images, labels = separable_digits(50)
    labels = torch.arange(50)  # unique "labels" identify the examples
    first = StudentDataModule(images, labels % 10, images[:5], labels[:5] % 10, val_fraction=0.2, seed=3)
    again = StudentDataModule(images, labels % 10, images[:5], labels[:5] % 10, val_fraction=0.2, seed=3)
    first.setup(), again.setup()
    assert torch.equal(first.val_set.tensors[0], again.val_set.tensors[0])
    train_rows = {tuple(x.flatten()[:50].tolist()) for x in first.train_set.tensors[0]}
    assert not any(tuple(x.flatten()[:50].tolist()) in train_rows for x in first.val_set.tensors[0])


@pytest.mark.parametrize(
    "kwargs, message",
    [({"architecture": "resnet"}, "unknown student architecture"), ({"lr": 0.0}, "lr must be > 0"),
     ({"normalization": "imagenet"}, "unknown normalization")],
)
def test_bad_module_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        StudentModule(**kwargs)


def test_bad_data():
    images, labels = separable_digits(10)
    with pytest.raises(ValueError, match="no query was answered"):
        StudentDataModule(images[:0], labels[:0], images, labels)
    with pytest.raises(ValueError, match=r"expected images \(N, 1, 28, 28\)"):
        StudentDataModule(images.squeeze(1), labels, images, labels)
    with pytest.raises(ValueError, match="val_fraction"):
        StudentDataModule(images, labels, images, labels, val_fraction=1.0)


def test_overall_accuracy_is_micro_and_per_class_is_reported(tmp_path):
    images, labels = separable_digits(12)
    labels = torch.tensor([0] * 9 + [1] * 3)  # imbalanced: micro and macro accuracy differ
    model = StudentModule()
    with torch.no_grad():  # a network that always answers 0
        model.net.fc2.bias.zero_()
        model.net.fc2.bias[0] = 1e4
    data = StudentDataModule(images, labels, images, labels, batch_size=4, val_fraction=0.0)
    metrics = trainer(tmp_path).test(model, datamodule=data, verbose=False)[0]
    assert metrics["test/acc"] == pytest.approx(0.75)  # 9 of 12, not the 0.5 macro average
    assert model.test_accuracy_per_class[:2] == [1.0, 0.0]
