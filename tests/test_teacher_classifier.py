import json
import pickle

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch import Trainer
from torch import nn

from pate_lightning.callbacks.classifier_export import ClassifierExport
from pate_lightning.cli import cli_main
from pate_lightning.errors import PateError
from pate_lightning.models.classifier import UCStubModel
from pate_lightning.modules.teacher_classifier import TeacherClassifierModule
from pate_lightning.teachers import (
    NORMALIZATIONS, Normalization, load_classifier, load_teacher_ensemble, teacher_log_probs,
)
from tests.conftest import REPO
from tests.test_vae import fake_datamodule


class SaferlearnUCStubModel(nn.Module):
    """saferlearn's MNIST teacher, re-declared here exactly as that project writes it."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.relu(self.conv2(F.relu(self.conv1(x))))
        x = self.dropout1(F.max_pool2d(x, 2))
        x = self.dropout2(F.relu(self.fc1(torch.flatten(x, 1))))
        return F.log_softmax(self.fc2(x), dim=1)


def test_state_dicts_round_trip_strictly_with_saferlearn():
    theirs = SaferlearnUCStubModel().eval()
    ours = UCStubModel().eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.rand(3, 1, 28, 28)
    assert torch.allclose(ours(x), theirs(x))
    again = SaferlearnUCStubModel()
    again.load_state_dict(UCStubModel().state_dict(), strict=True)


def test_stacked_member_is_a_saferlearn_state_dict():
    module = TeacherClassifierModule(teacher_ids=[3, 5])
    theirs = SaferlearnUCStubModel().eval()
    theirs.load_state_dict(module.member_state_dict(1), strict=True)
    x = torch.rand(2, 4, 1, 28, 28)
    assert torch.allclose(module(x)[1], theirs(NORMALIZATIONS["mnist"](x[1])), atol=1e-5)


def test_wrong_shape_and_non_tensor_files_are_clear_errors(tmp_path):
    folder = tmp_path / "7"
    folder.mkdir()
    bad = SaferlearnUCStubModel().state_dict()
    bad["fc2.weight"] = torch.zeros(5, 128)
    torch.save(bad, folder / "model.pth")
    with pytest.raises(PateError, match="teacher 7: state_dict does not fit") as info:
        load_classifier(tmp_path, 7)
    assert "7/model.pth" in str(info.value)
    with open(folder / "model.pth", "wb") as handle:
        pickle.dump({"weights": [1, 2, 3]}, handle)
    with pytest.raises(PateError, match="teacher 7 classifier"):
        load_classifier(tmp_path, 7)
    with pytest.raises(PateError, match="not found"):
        load_classifier(tmp_path, 8)


def test_recorded_normalization_is_used_unless_overridden(tmp_path):
    for teacher_id, norm in ((0, None), (1, {"name": "half", "mean": 0.5, "std": 0.5})):
        (tmp_path / str(teacher_id)).mkdir()
        torch.save(UCStubModel().state_dict(), tmp_path / str(teacher_id) / "model.pth")
        if norm:
            (tmp_path / str(teacher_id) / "report.json").write_text(json.dumps({"normalization": norm}))
    ensemble = load_teacher_ensemble(tmp_path, [0, 1])
    assert ensemble.normalizations == [NORMALIZATIONS["mnist"], Normalization(0.5, 0.5)]
    assert load_teacher_ensemble(tmp_path, [0, 1], "half").normalizations == [Normalization(0.5, 0.5)] * 2
    images = torch.rand(5, 1, 28, 28)
    log_probs = teacher_log_probs(ensemble, images)
    assert log_probs.shape == (2, 5, 10)
    expected = ensemble.models[1](Normalization(0.5, 0.5)(images))
    assert torch.allclose(log_probs[1], expected, atol=1e-5)


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


def test_export_writes_saferlearn_layout_and_report(tmp_path):
    run_dir = tmp_path / "run"
    fit_classifier(tmp_path, [2], callbacks=[ClassifierExport(run_dir, tensorboard=False)])
    SaferlearnUCStubModel().load_state_dict(torch.load(run_dir / "trained_nets/2/model.pth", weights_only=True))
    report = json.loads((run_dir / "trained_nets/2/report.json").read_text())
    assert report["epochs"] == 1 and report["test_examples"] == 40
    assert 0.0 <= report["test_accuracy"] <= 1.0
    assert report["normalization"] == {"name": "mnist", "mean": 0.1307, "std": 0.3081}
    assert {"loss", "accuracy"} <= set(report["history"][0])


@pytest.mark.integration
def test_two_teachers_on_real_mnist_beat_chance_widely(tmp_path, mnist_dir, capsys):
    run_dir = tmp_path / "run"
    cli_main([
        "fit", "--config", str(REPO / "configs/teacher_classifier.yaml"), f"--data.data_dir={mnist_dir}",
        f"--data.run_dir={run_dir}", "--data.teacher_ids=[0,1]", "--trainer.max_epochs=3",
        "--trainer.accelerator=cpu", "--trainer.enable_progress_bar=false",
    ])
    for teacher_id in (0, 1):
        report = json.loads((run_dir / f"trained_nets/{teacher_id}/report.json").read_text())
        assert report["test_accuracy"] > 0.6, report["test_accuracy"]  # chance is 0.1
    cli_main(["eval-teachers", "--teachers_dir", str(run_dir / "trained_nets"), "--data_dir", str(mnist_dir)])
    assert "2 teachers: mean" in capsys.readouterr().out
