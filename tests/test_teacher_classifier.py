"""Training teacher classifiers stacked: per-teacher streams, saferlearn-layout export, real-MNIST run."""

import json

import pytest
import torch
from lightning.pytorch import Trainer

from pate_lightning.classifiers.export import ClassifierExport
from pate_lightning.pipeline.cli import cli_main
from pate_lightning.classifiers.module import TeacherClassifierModule
from pate_lightning.classifiers.loading import NORMALIZATIONS, load_teacher_ensemble
from tests.conftest import REPO
from tests.test_classifier import SaferlearnUCStubModel
from tests.helpers import torch_calls
from tests.test_vae import fake_datamodule


def test_stacked_member_is_a_saferlearn_state_dict():
    module = TeacherClassifierModule(teacher_ids=[3, 5]).eval()
    theirs = SaferlearnUCStubModel().eval()
    theirs.load_state_dict(module.member_state_dict(1), strict=True)
    x = torch.rand(2, 4, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(module(x)[1], theirs(NORMALIZATIONS["mnist"](x[1])), atol=1e-5)


def test_initial_weights_come_from_each_teachers_own_stream():
    grouped = TeacherClassifierModule(teacher_ids=[0, 1, 2], seed=7)
    alone = TeacherClassifierModule(teacher_ids=[1], seed=7)
    for name, tensor in alone.member_state_dict(0).items():
        assert torch.equal(grouped.member_state_dict(1)[name], tensor), name
    assert not torch.equal(grouped.member_state_dict(0)["fc1.weight"], grouped.member_state_dict(1)["fc1.weight"])
    with pytest.raises(ValueError, match="unknown normalization"):
        TeacherClassifierModule(normalization="imagenet")


def test_dropout_masks_are_one_draw_for_the_stack_and_each_teachers_own():
    grouped, alone = TeacherClassifierModule(teacher_ids=[0, 1, 2], seed=7), TeacherClassifierModule(teacher_ids=[1], seed=7)
    # the host work of a step's masks does not grow with the stack
    assert torch_calls(grouped._masks, 4) == torch_calls(TeacherClassifierModule(teacher_ids=list(range(12)))._masks, 4)
    alone._masks(4)
    keep1, keep2 = grouped._masks(4)
    alone1, alone2 = alone._masks(3)  # the second step of both; a smaller batch is a prefix
    assert torch.equal(alone1[0], keep1[1, :3]) and torch.equal(alone2[0], keep2[1, :3])
    assert torch.equal(keep1.unique(), torch.tensor([0.0, 1 / 0.75])) and torch.equal(keep2.unique(), torch.tensor([0.0, 2.0]))
    assert not torch.equal(keep1[0], keep1[1]) and not torch.equal(grouped._masks(4)[0], keep1)  # per teacher, per step


def fit_classifier(tmp_path, teacher_ids, callbacks=()):
    dm = fake_datamodule(tmp_path, teacher_ids)
    model = TeacherClassifierModule(teacher_ids=teacher_ids, seed=7)
    trainer = Trainer(
        max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path, callbacks=list(callbacks),
    )
    trainer.fit(model, datamodule=dm)
    return model


def test_teacher_in_group_matches_teacher_alone_after_one_epoch(tmp_path):
    grouped = fit_classifier(tmp_path / "g", [0, 1, 2])
    alone = fit_classifier(tmp_path / "a", [1])
    ours, theirs = grouped.member_state_dict(1), alone.member_state_dict(0)
    for name in ours:
        # relative to the tensor's norm: a weight that is ~0 may differ in its last float bits
        # (vmap's batched convolution sums in another order), which Adam's step can magnify
        error = (ours[name] - theirs[name]).norm() / theirs[name].norm()
        assert error < 1e-4, (name, float(error))
    metrics = grouped.epoch_metrics()
    assert {name: tuple(v.shape) for name, v in metrics.items()} == {"loss": (3,), "accuracy": (3,)}
    assert torch.allclose(metrics["loss"][1], alone.epoch_metrics()["loss"][0], rtol=1e-4)


def test_export_writes_saferlearn_layout_and_report(tmp_path):
    run_dir = tmp_path / "run"
    fit_classifier(tmp_path, [2], callbacks=[ClassifierExport(run_dir, tensorboard=False)])
    state = torch.load(run_dir / "trained_nets/2/model.pth", weights_only=True)
    SaferlearnUCStubModel().load_state_dict(state, strict=True)
    report = json.loads((run_dir / "trained_nets/2/report.json").read_text())
    assert report["epochs"] == 1 and report["test_examples"] == 40 and report["shard_size"] == 30
    assert 0.0 <= report["test_accuracy"] <= 1.0
    assert report["normalization"] == {"name": "mnist", "mean": 0.1307, "std": 0.3081}
    assert len(report["loss_curve"]) == len(report["train_accuracy_curve"]) == 1
    assert report["seed"] == 7 and report["hyperparameters"]["lr"] == 1e-3
    assert load_teacher_ensemble(run_dir / "trained_nets", [2]).normalizations == [NORMALIZATIONS["mnist"]]


@pytest.mark.integration
def test_two_teachers_on_real_mnist_beat_chance_widely(tmp_path, mnist_dir):
    run_dir = tmp_path / "run"
    cli_main([
        "fit", "--config", str(REPO / "configs/teacher_classifier.yaml"), f"--data.data_dir={mnist_dir}",
        f"--data.run_dir={run_dir}", "--data.teacher_ids=[0,1]", "--trainer.max_epochs=5",
        "--trainer.accelerator=cpu", "--trainer.enable_progress_bar=false",
    ])
    for teacher_id in (0, 1):
        assert (run_dir / f"trained_nets/{teacher_id}/model.pth").is_file()
        report = json.loads((run_dir / f"trained_nets/{teacher_id}/report.json").read_text())
        assert report["test_examples"] == 10_000 and report["epochs"] == 5
        assert report["test_accuracy"] > 0.6, report["test_accuracy"]  # chance is 0.1


def test_public_init_starts_every_teacher_from_the_public_weights(tmp_path):
    public = TeacherClassifierModule(teacher_ids=[0], seed=3).member_state_dict(0)
    (tmp_path / "trained_nets/0").mkdir(parents=True)
    torch.save(public, tmp_path / "trained_nets/0/model.pth")
    module = TeacherClassifierModule(teacher_ids=[4, 9], seed=7, public_init=str(tmp_path / "trained_nets"))
    for k in (0, 1):
        for name, tensor in public.items():
            assert torch.equal(module.member_state_dict(k)[name], tensor), (k, name)


def test_test_examples_limits_the_reported_test_accuracy_to_the_first_images(tmp_path):
    run_dir = tmp_path / "run"
    dm = fake_datamodule(tmp_path, [2])
    model = TeacherClassifierModule(teacher_ids=[2], seed=7, test_examples=15)
    trainer = Trainer(
        max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path, callbacks=[ClassifierExport(run_dir, tensorboard=False)],
    )
    trainer.fit(model, datamodule=dm)
    report = json.loads((run_dir / "trained_nets/2/report.json").read_text())
    assert report["test_examples"] == 15 and report["hyperparameters"]["test_examples"] == 15
    with pytest.raises(ValueError, match="test_examples"):
        TeacherClassifierModule(test_examples=0)
