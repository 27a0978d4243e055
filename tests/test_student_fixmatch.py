"""FixMatch student: the threshold masks the unlabeled loss exactly; no unlabeled data = the supervised student."""

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset
from lightning.pytorch import Trainer, seed_everything

from pate_lightning.pate.student import StudentModule
from pate_lightning.pate.semi_supervised import fixmatch_unlabeled_loss, pseudo_labels
from pate_lightning.pate.student_augment import StrongAugment, pixel_shift, strong_view, view_averaged_log_probs, weak_view
from pate_lightning.pate.student_data import StudentDataModule
from pate_lightning.pate.student_training import StudentSettings, train_student
from tests.test_student import separable_digits, trainer


def random_log_probs(count: int, seed: int) -> torch.Tensor:
    logits = torch.randn(count, 10, generator=torch.Generator().manual_seed(seed)) * 3
    return F.log_softmax(logits, dim=1)  # (count, 10)


@pytest.mark.parametrize("threshold", [0.0, 0.5, 0.9, 1.0])
def test_unlabeled_loss_is_masked_exactly_by_the_threshold(threshold):
    weak = random_log_probs(64, seed=0)
    strong = random_log_probs(64, seed=1).requires_grad_()
    loss, mask = fixmatch_unlabeled_loss(weak, strong, threshold)
    confidence, target = weak.exp().max(dim=1)
    assert torch.equal(mask, confidence >= threshold)
    expected = sum((-strong[i, target[i]] for i in range(64) if mask[i]), torch.tensor(0.0)) / 64  # mean over all U images
    assert float(loss.detach()) == pytest.approx(float(expected.detach()), abs=1e-6)
    loss.backward()
    # images below the threshold get exactly zero gradient; the others exactly d/dx of -log p / U
    assert torch.all(strong.grad[~mask] == 0)
    rows = mask.nonzero().flatten()
    assert torch.allclose(strong.grad[rows, target[rows]], torch.full((len(rows),), -1 / 64))


def test_masked_images_may_be_anything():
    weak = torch.tensor([[0.99, 0.01], [0.55, 0.45]]).log()
    strong = torch.tensor([[0.7, 0.3], [0.5, 0.5]]).log()
    poisoned = strong.clone()
    poisoned[1] = torch.tensor([float("-inf"), 0.0])  # the masked image's strong view: a certain wrong class
    loss, mask = fixmatch_unlabeled_loss(weak, strong, threshold=0.95)
    again, _ = fixmatch_unlabeled_loss(weak, poisoned, threshold=0.95)
    assert mask.tolist() == [True, False] and float(loss) == float(again) == pytest.approx(-torch.tensor(0.7).log() / 2)
    assert pseudo_labels(weak, 0.95)[0].tolist() == [0, 0]


def test_without_unlabeled_data_fixmatch_is_the_supervised_student():
    images, labels = separable_digits(16)
    seed_everything(0, verbose=False)
    supervised = StudentModule(architecture="small_cnn", method="supervised")
    fixmatch = StudentModule(architecture="small_cnn", method="fixmatch")
    fixmatch.load_state_dict(supervised.state_dict())
    losses = [supervised.training_step((images, labels), 0), fixmatch.training_step({"labeled": (images, labels)}, 0)]
    assert torch.equal(losses[0], losses[1])
    for loss in losses:
        loss.backward()
    for (name, a), (_, b) in zip(supervised.named_parameters(), fixmatch.named_parameters()):
        assert torch.equal(a.grad, b.grad), name


def test_a_separate_weak_pass_is_the_same_loss_without_a_graph_for_the_pseudo_labels():
    images, labels = separable_digits(8)
    pool = separable_digits(16, seed=3)[0]
    generator = torch.Generator().manual_seed(0)
    weak = weak_view(pool, generator).requires_grad_()
    strong = strong_view(pool, generator, StrongAugment())
    seed_everything(0, verbose=False)
    model = StudentModule(architecture="small_cnn", method="fixmatch", unlabeled_weight=2.0, separate_weak_pass=True)
    with torch.no_grad():  # an untrained net is unsure: a threshold at its median confidence splits the pool
        model.hparams.threshold = float(model(weak).exp().max(dim=1).values.median())
    loss = model.training_step({"labeled": (images, labels), "unlabeled": (weak, strong)}, 0)
    # training mode: batch norm uses each pass's own batch statistics, so this recomputation is exact
    with torch.no_grad():
        pseudo = model(weak)
        together = model(torch.cat([images, strong]))
        unlabeled, mask = fixmatch_unlabeled_loss(pseudo, together[8:], model.hparams.threshold)
    assert 0 < int(mask.sum()) < 16
    assert float(loss) == pytest.approx(float(F.nll_loss(together[:8], labels) + 2.0 * unlabeled), abs=1e-5)
    loss.backward()
    assert weak.grad is None and all(p.grad is not None for p in model.parameters())


def test_an_empty_pool_trains_on_labeled_batches_only(tmp_path):
    images, labels = separable_digits(20)
    data = StudentDataModule(images, labels, images[:10], labels[:10], batch_size=8, val_fraction=0.0,
                             unlabeled=torch.empty(0, 1, 28, 28))
    data.setup()
    batch = next(iter(data.train_dataloader()))[0]  # CombinedLoader yields (batch, batch_idx, dataloader_idx)
    assert set(batch) == {"labeled"}
    model = StudentModule(architecture="small_cnn", method="fixmatch")
    trainer(tmp_path, fast_dev_run=True).fit(model, datamodule=data)
    assert data.sizes["unlabeled"] == 0


def test_fixmatch_batches_hold_mu_unlabeled_images_per_labeled_one(tmp_path):
    images, labels = separable_digits(12)  # 3 labeled batches, cycled
    pool = separable_digits(60, seed=5)[0]
    data = StudentDataModule(images, labels, images[:10], labels[:10], batch_size=4, val_fraction=0.0,
                             unlabeled=pool, mu=3)
    seen = []

    class Spy(StudentModule):
        def training_step(self, batch, batch_idx):
            seen.append({k: tuple(v[0].shape) for k, v in batch.items()})
            return super().training_step(batch, batch_idx)

    spy = Spy(architecture="small_cnn", method="fixmatch", threshold=0.0)
    fit = trainer(tmp_path, max_epochs=1)
    fit.fit(spy, datamodule=data)
    assert len(seen) == 5 and fit.global_step == 5  # 60 pool images / (3 x 4) a step: the pool sets the epoch
    assert seen[0] == {"labeled": (4, 1, 28, 28), "unlabeled": (12, 1, 28, 28)}
    assert 0 <= float(fit.callback_metrics["train/mask_rate"]) <= 1


def test_views_stay_images_and_differ():
    images = separable_digits(8)[0]
    generator = torch.Generator().manual_seed(0)
    weak, strong = weak_view(images, generator), strong_view(images, generator, StrongAugment(elastic=1.0))
    for view in (weak, strong):
        assert view.shape == images.shape and 0 <= float(view.min()) and float(view.max()) <= 1
        assert not torch.equal(view, images)
    # a pure shift keeps the ink (up to what leaves the frame and bilinear blur)
    assert float(weak.sum()) == pytest.approx(float(images.sum()), rel=0.25)


def test_the_crop_weak_view_moves_whole_pixels_within_three():
    images = torch.rand(40, 1, 28, 28)
    weak = weak_view(images, torch.Generator().manual_seed(0), "crop")
    for image, view in zip(images, weak):
        # the view is the image moved by some (dy, dx) in [-3, 3]^2, zeros where it left the frame: no resampling
        assert any(torch.equal(view, pixel_shift(image[None], torch.tensor([[dy, dx]]))[0])
                   for dy in range(-3, 4) for dx in range(-3, 4))
    assert len({tuple(pixel_shift(images[:1], torch.tensor([[dy, 0]])).flatten().tolist()) for dy in range(-3, 4)}) == 7
    with pytest.raises(ValueError, match="unknown weak view 'flip'"):
        weak_view(images, torch.Generator(), "flip")


def test_pixel_shift_is_a_zero_filled_roll():
    images = torch.rand(5, 2, 9, 7)
    shifts = torch.tensor([[0, 0], [2, -1], [-3, 3], [1, 1], [-2, 0]])
    moved = pixel_shift(images, shifts)
    for image, (dy, dx), out in zip(images, shifts.tolist(), moved):
        expected = torch.roll(F.pad(image, (3, 3, 3, 3)), (dy, dx), (1, 2))[:, 3:12, 3:10]
        assert torch.equal(out, expected)
    assert torch.equal(moved[0], images[0])


def test_the_weak_view_setting_reaches_the_batches(tmp_path):
    images, labels = separable_digits(8)
    pool = separable_digits(16, seed=5)[0]
    seen = []

    class Spy(StudentModule):
        def training_step(self, batch, batch_idx):
            seen.append(batch["unlabeled"][0])
            return super().training_step(batch, batch_idx)

    for weak in ("affine", "crop"):
        data = StudentDataModule(images, labels, images, labels, batch_size=8, val_fraction=0.0, unlabeled=pool, mu=2,
                                 weak=weak)
        trainer(tmp_path, max_epochs=1).fit(Spy(architecture="small_cnn", method="fixmatch"), datamodule=data)
    affine, crop = seen
    # whole-pixel shifts only copy pixels: every value of the crop views is 0 or a pool pixel; bilinear ones blend
    assert set(crop.unique().tolist()) <= set(pool.unique().tolist()) | {0.0}
    assert not set(affine.unique().tolist()) <= set(pool.unique().tolist()) | {0.0}
    with pytest.raises(ValueError, match="unknown weak view"):
        StudentDataModule(images, labels, images, labels, unlabeled=pool, weak="flip")


def test_train_student_reports_fixmatch_and_ema(tmp_path):
    images, labels = separable_digits(30)
    test = separable_digits(20, seed=1)
    settings = StudentSettings(epochs=1, batch_size=8, val_fraction=0.0, architecture="small_cnn", method="fixmatch",
                               mu=2, ema_decay=0.9, cosine=True).check()
    report = train_student(images, labels, test, settings, "cpu", 0, tmp_path, unlabeled=separable_digits(48, 2)[0])
    assert report["method"] == "fixmatch" and report["sizes"] == {"train": 30, "val": 0, "test": 20, "unlabeled": 48}
    # 4 labeled batches of 8 outnumber the 3 unlabeled batches of 16: the longer loader sets the epoch
    assert report["steps"] == 4 and 0 <= report["final_mask_rate"] <= 1 and len(report["test_accuracy_per_class"]) == 10
    supervised = train_student(images, labels, test, StudentSettings(epochs=1, batch_size=8, val_fraction=0.0), "cpu", 0,
                               tmp_path, unlabeled=separable_digits(48, 2)[0])
    assert "unlabeled" not in supervised["sizes"] and supervised["final_mask_rate"] is None  # the pool is ignored


@pytest.mark.parametrize(
    "kwargs, message",
    [({"method": "mixmatch"}, "unknown student.method"), ({"threshold": 1.5}, "student.threshold"),
     ({"mu": 0}, "student.mu"), ({"ema_decay": 1.0}, "ema_decay"), ({"architecture": "vit"}, "unknown student.arch"),
     ({"weak": "flip"}, "unknown student.weak"), ({"test_views": -1}, "student.test_views")],
)
def test_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        StudentSettings(**kwargs).check()


def test_selection_set_is_scored_apart_from_the_test_set(tmp_path):
    images, labels = separable_digits(30)
    test = separable_digits(20, seed=1)
    # a selection set whose labels are all wrong scores 0 and leaves the test score and per-class accuracy alone
    selection_images, selection_labels = separable_digits(20, seed=3)
    settings = StudentSettings(epochs=3, batch_size=8, val_fraction=0.0, lr=3e-3).check()
    plain = train_student(images, labels, test, settings, "cpu", 0, tmp_path)
    scored = train_student(images, labels, test, settings, "cpu", 0, tmp_path,
                           selection=(selection_images, (selection_labels + 1) % 10))
    assert plain["selection_accuracy"] is None
    assert scored["test_accuracy"] == plain["test_accuracy"] > 0.5
    assert scored["test_accuracy_per_class"] == plain["test_accuracy_per_class"]
    assert scored["selection_accuracy"] < 0.5


def test_test_views_average_the_probabilities_of_weak_views_per_test_batch(tmp_path):
    seed_everything(0, verbose=False)
    images, labels = separable_digits(20, seed=1)
    model = StudentModule(architecture="small_cnn", test_views=3, test_view="crop").eval()
    loader = DataLoader(TensorDataset(images, labels), batch_size=8)
    metrics = trainer(tmp_path).test(model, dataloaders=loader, verbose=False)[0]
    with torch.no_grad():  # by hand: per batch, a generator seeded by the batch's index draws 3 crop views
        single = model(images).argmax(1)
        averaged = torch.cat([
            torch.stack([model(weak_view(batch, generator, "crop")).exp() for _ in range(3)]).mean(0).argmax(1)
            for generator, batch in ((torch.Generator().manual_seed(i), b) for i, b in enumerate(images.split(8)))])
    assert metrics["test/acc"] == pytest.approx(float((averaged == labels).float().mean()))
    assert metrics["test/acc_single_view"] == pytest.approx(float((single == labels).float().mean()))
    assert not torch.equal(averaged, single)  # an untrained network: the views change some predictions
    uniform = lambda x: torch.full((len(x), 10), 0.1).log()  # noqa: E731
    with pytest.raises(ValueError, match="test-time views must be >= 1"):
        view_averaged_log_probs(uniform, images, 0, torch.Generator())
    with pytest.raises(ValueError, match="test_view one of"):
        StudentModule(test_view="flip")


def test_train_student_reports_the_single_view_score_beside_the_averaged_one(tmp_path):
    images, labels = separable_digits(30)
    test, selection = separable_digits(20, seed=1), separable_digits(20, seed=3)
    settings = StudentSettings(epochs=2, batch_size=8, val_fraction=0.0, lr=3e-3, weak="crop").check()
    plain = train_student(images, labels, test, settings, "cpu", 0, tmp_path, selection=selection)
    views = train_student(images, labels, test, replace(settings, test_views=4), "cpu", 0, tmp_path, selection=selection)
    # test views draw from their own generators: the training is the same, and so are the single-view scores
    assert plain["test_accuracy_single_view"] == plain["test_accuracy"] == views["test_accuracy_single_view"]
    assert plain["selection_accuracy_single_view"] == plain["selection_accuracy"] == views["selection_accuracy_single_view"]
    assert views["test_views"] == 4 and 0 <= views["test_accuracy"] <= 1
