"""The classifier loading contract: saferlearn's ``{id}/model.pth``, recorded normalization, clear errors."""

import json
import pickle

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pate_lightning.pipeline.cli import cli_main
from pate_lightning.errors import PateError
from pate_lightning.classifiers.model import UCStubModel
from pate_lightning.classifiers.loading import (
    NORMALIZATIONS, Normalization, find_teacher_ids, load_teacher_ensemble, teacher_log_probs,
)
from tests.helpers import write_fake_mnist


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


def save_teacher(teachers_dir, teacher_id, state=None, normalization=None):
    folder = teachers_dir / str(teacher_id)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(SaferlearnUCStubModel().state_dict() if state is None else state, folder / "model.pth")
    if normalization is not None:
        (folder / "report.json").write_text(json.dumps({"normalization": normalization}))
    return folder / "model.pth"


def test_saferlearn_state_dicts_round_trip_strictly_both_ways(tmp_path):
    theirs = SaferlearnUCStubModel().eval()
    save_teacher(tmp_path, 3, theirs.state_dict())
    ensemble = load_teacher_ensemble(tmp_path, [3])
    images = torch.rand(6, 1, 28, 28)
    expected = theirs(NORMALIZATIONS["mnist"](images))
    assert torch.allclose(teacher_log_probs(ensemble, images)[0], expected, atol=1e-5)
    back = SaferlearnUCStubModel().eval()
    back.load_state_dict(ensemble.models[0].state_dict(), strict=True)
    assert torch.equal(back.fc1.weight, theirs.fc1.weight)
    assert set(UCStubModel().state_dict()) == set(theirs.state_dict())


def test_missing_file_names_teacher_and_file(tmp_path):
    save_teacher(tmp_path, 0)
    with pytest.raises(PateError, match=r"4/model\.pth: teacher 4 classifier not found"):
        load_teacher_ensemble(tmp_path, [0, 4])


def test_state_dict_of_another_shape_names_teacher_and_file(tmp_path):
    state = SaferlearnUCStubModel().state_dict()
    state["fc2.weight"] = torch.zeros(5, 128)
    state["fc2.bias"] = torch.zeros(5)
    save_teacher(tmp_path, 7, state)
    with pytest.raises(PateError, match=r"7/model\.pth: teacher 7: state_dict does not fit saferlearn's UCStubModel"):
        load_teacher_ensemble(tmp_path, [7])


@pytest.mark.parametrize("content", ["dict of lists", "whole module"])
def test_non_tensor_pickle_names_teacher_and_file(tmp_path, content):
    path = save_teacher(tmp_path, 2)
    if content == "dict of lists":
        with open(path, "wb") as handle:
            pickle.dump({"weights": [1, 2, 3]}, handle)
    else:
        torch.save(SaferlearnUCStubModel(), path)  # a pickled module is refused by weights_only loading
    with pytest.raises(PateError, match=r"2/model\.pth: .*teacher 2 classifier"):
        load_teacher_ensemble(tmp_path, [2])


def test_recorded_normalization_then_argument_then_mnist(tmp_path):
    save_teacher(tmp_path, 0)
    save_teacher(tmp_path, 1, normalization={"name": "half", "mean": 0.5, "std": 0.5})
    assert load_teacher_ensemble(tmp_path, [0, 1]).normalizations == [NORMALIZATIONS["mnist"], Normalization(0.5, 0.5)]
    assert load_teacher_ensemble(tmp_path, [0, 1], "half").normalizations == [Normalization(0.5, 0.5)] * 2
    with pytest.raises(PateError, match=r"1/report\.json: teacher 1 was trained with normalization mean 0\.5"):
        load_teacher_ensemble(tmp_path, [0, 1], "mnist")
    with pytest.raises(ValueError, match="unknown normalization 'imagenet'"):
        load_teacher_ensemble(tmp_path, [0], "imagenet")


def test_unreadable_recorded_normalization_is_a_clear_error(tmp_path):
    save_teacher(tmp_path, 5)
    (tmp_path / "5" / "report.json").write_text('{"normalization": {"name": "mnist"}}')
    with pytest.raises(PateError, match=r"5/report\.json: teacher 5: report\.json has no readable normalization"):
        load_teacher_ensemble(tmp_path, [5])


def test_teacher_log_probs_applies_each_teachers_normalization(tmp_path):
    save_teacher(tmp_path, 0)
    save_teacher(tmp_path, 1, normalization={"name": "half", "mean": 0.5, "std": 0.5})
    ensemble = load_teacher_ensemble(tmp_path, [0, 1])
    images = torch.rand(7, 1, 28, 28)
    log_probs = teacher_log_probs(ensemble, images, batch_size=3)
    assert log_probs.shape == (2, 7, 10)
    with torch.no_grad():
        for k, norm in enumerate((NORMALIZATIONS["mnist"], Normalization(0.5, 0.5))):
            assert torch.allclose(log_probs[k], ensemble.models[k](norm(images)), atol=1e-5)
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\)"):
        teacher_log_probs(ensemble, torch.rand(7, 28, 28))


def test_eval_teachers_prints_a_table_of_every_teacher_found(tmp_path, capsys):
    data_dir = write_fake_mnist(tmp_path / "data", train=20, test=40)
    teachers_dir = tmp_path / "trained_nets"
    for teacher_id in (0, 2, 10):
        save_teacher(teachers_dir, teacher_id)
    (teachers_dir / "notes").mkdir()
    assert find_teacher_ids(teachers_dir) == [0, 2, 10]
    cli_main(["eval-teachers", "--teachers_dir", str(teachers_dir), "--data_dir", str(data_dir)])
    out = capsys.readouterr().out
    assert [line.split()[0] for line in out.splitlines()[2:5]] == ["0", "2", "10"]
    assert "3 teachers: mean" in out and "min" in out and "median" in out and "max" in out
    # a relative teachers_dir is resolved against run_dir, like every *_dir setting inside a run
    cli_main(["eval-teachers", "--run_dir", str(tmp_path), "--teachers_dir", "trained_nets", "--data_dir", str(data_dir)])
    assert capsys.readouterr().out == out
    cli_main(["eval-teachers", "--teachers_dir", str(teachers_dir), "--data_dir", str(data_dir),
              "--teacher_ids", "[2]", "--normalization", "half"])
    assert "1 teachers: mean" in capsys.readouterr().out
