"""The commands after generation: ``combine`` and ``evaluate`` (plus the real-MNIST pipeline run)."""

import csv
import json

import pytest
import torch

from pate_lightning import layout
from pate_lightning.pipeline.cli import cli_main
from pate_lightning.candidates.combine import combine_command
from pate_lightning.errors import PateError
from pate_lightning.evaluation.command import evaluate_command
from pate_lightning.io import save_torch, write_csv, write_json
from tests.conftest import REPO
from tests.helpers import write_fake_mnist


def write_dataset(run_dir, teacher_id, labels, seed=0):
    gen = torch.Generator().manual_seed(seed + teacher_id)
    images = torch.rand(len(labels), 1, 28, 28, generator=gen)
    save_torch(layout.synthetic_samples_file(run_dir, teacher_id), images)
    write_csv(layout.labels_file(run_dir, teacher_id), ["index", "label", "confidence"],
              [[i, c, "0.950000"] for i, c in enumerate(labels)])
    write_json(layout.selection_report_file(run_dir, teacher_id), {"teacher_id": teacher_id})
    return images


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def test_combine_pools_and_stratifies(tmp_path):
    run_dir = tmp_path / "run"
    first = write_dataset(run_dir, 0, [0] * 10 + [1] * 4)
    write_dataset(run_dir, 1, [2] * 6)
    write_dataset(run_dir, 3, [3] * 2)
    combine_command(run_dir=str(run_dir))
    out = run_dir / "synthetic"
    samples = torch.load(out / "combined_samples.pt", weights_only=True)
    meta = json.loads((out / "combined_metadata.json").read_text())
    owners = read_csv(out / "combined_teacher_ids.csv")
    assert samples.shape == (22, 1, 28, 28) and torch.equal(samples[:14], first)
    assert read_csv(out / "combined_labels.csv")[0] == ["index", "label", "confidence"]
    assert owners[0] == ["index", "teacher_id", "source_index"] and owners[15] == ["14", "1", "0"]
    assert meta["teacher_ids"] == [0, 1, 3] and meta["missing_teachers"] == [2] and meta["num_samples"] == 22

    combine_command(run_dir=str(run_dir), percentage=50, end_id=1, name="half", seed=3)
    meta = json.loads((out / "half_metadata.json").read_text())
    assert meta["teacher_ids"] == [0, 1]
    assert meta["class_distribution"]["0"] == 5 and meta["class_distribution"]["1"] == 2 and meta["class_distribution"]["2"] == 3
    before = (out / "half_samples.pt").read_bytes()
    combine_command(run_dir=str(run_dir), percentage=50, end_id=1, name="half", seed=3)
    assert (out / "half_samples.pt").read_bytes() == before  # deterministic
    combine_command(run_dir=str(run_dir), percentage=50, start_id=0, end_id=0, name="zero", seed=3)
    rows = read_csv(out / "zero_teacher_ids.csv")[1:]
    half_rows = read_csv(out / "half_teacher_ids.csv")[1:]
    assert [r[2] for r in rows] == [r[2] for r in half_rows if r[1] == "0"]  # teacher 0's subset ignores the range


def test_combine_errors(tmp_path):
    with pytest.raises(ValueError, match="percentage"):
        combine_command(run_dir=str(tmp_path), percentage=0)
    with pytest.raises(PateError, match="no teacher"):
        combine_command(run_dir=str(tmp_path))


def shard_run(tmp_path, labels_by_teacher):
    data_dir = write_fake_mnist(tmp_path / "data", train=40, test=40)
    run_dir = tmp_path / "run"
    write_json(layout.shard_file(run_dir), {"0": list(range(20)), "1": list(range(20, 40))})
    for teacher_id, labels in labels_by_teacher.items():
        write_dataset(run_dir, teacher_id, labels)
    return data_dir, run_dir


def test_evaluate_writes_criteria_per_teacher(tmp_path, capsys):
    data_dir, run_dir = shard_run(tmp_path, {0: [c % 10 for c in range(30)], 1: []})
    reports = evaluate_command(run_dir=str(run_dir), data_dir=str(data_dir), reference_epochs=1)
    table = capsys.readouterr().out
    assert "teachers passing" in table
    report = json.loads(layout.evaluation_report_file(run_dir, 0).read_text())
    criteria = report["criteria"]
    assert criteria["mean_confidence"] == {"value": pytest.approx(0.95), "threshold": 0.9, "passed": True}
    assert criteria["class_histogram_l1"]["passed"] is True  # fake shard: labels 0..9 equally often
    assert set(criteria) == {"mean_confidence", "diversity_ratio", "min_nn_distance", "class_histogram_l1", "agreement_rate"}
    assert 0 <= criteria["agreement_rate"]["value"] <= 1 and report["reference"]["sha256"]
    assert reports[1]["num_samples"] == 0 and reports[1]["all_passed"] is False  # empty set: fails, no crash
    reference = run_dir / "reference" / "model.pth"
    stamp = reference.stat().st_mtime_ns
    evaluate_command(run_dir=str(run_dir), data_dir=str(data_dir), teacher_ids=[0], reference_epochs=1)
    assert reference.stat().st_mtime_ns == stamp  # cached
    with pytest.raises(PateError, match=r"teachers \[5\] have no selection_report"):
        evaluate_command(run_dir=str(run_dir), data_dir=str(data_dir), teacher_ids=[5], reference=False)


def train_classifier(data_dir, run_dir, teacher_id, epochs):
    """A real teacher classifier on the teacher's shard: a tiny fit for the integration test."""
    from lightning.pytorch import Trainer
    from torch.utils.data import DataLoader, TensorDataset

    from pate_lightning.data.sources import load_split
    from pate_lightning.evaluation.reference import ReferenceClassifier
    from pate_lightning.classifiers.loading import NORMALIZATIONS

    images, labels = load_split("mnist", data_dir, train=True)
    index = json.loads(layout.shard_file(run_dir).read_text())[str(teacher_id)]
    x = NORMALIZATIONS["mnist"](images[index].unsqueeze(1).float() / 255)
    torch.manual_seed(teacher_id)
    module = ReferenceClassifier()
    Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False).fit(
        module, DataLoader(TensorDataset(x, labels[index]), batch_size=16, shuffle=True))
    save_torch(run_dir / "trained_nets" / str(teacher_id) / "model.pth", module.net.state_dict())


@pytest.mark.integration
def test_real_mnist_two_teachers_generate_evaluate_combine(tmp_path, mnist_dir):
    run_dir = tmp_path / "run"
    cli_main(["fit", "--config", str(REPO / "configs/teacher_vae.yaml"), f"--data.data_dir={mnist_dir}",
              f"--data.run_dir={run_dir}", "--data.teacher_ids=[0,1]", "--trainer.max_epochs=30",
              "--trainer.accelerator=cpu", "--trainer.enable_progress_bar=false", "--trainer.enable_checkpointing=false",
              "--trainer.callbacks.init_args.kl_annealing_epochs=5"])
    for teacher_id in (0, 1):
        train_classifier(mnist_dir, run_dir, teacher_id, epochs=5)
    cli_main(["predict", "--config", str(REPO / "configs/generate.yaml"), f"--data.data_dir={mnist_dir}",
              f"--data.run_dir={run_dir}", "--data.teacher_ids=[0,1]", "--data.pool_size=500",
              "--trainer.accelerator=cpu", "--trainer.enable_progress_bar=false",
              # blurry 30-epoch VAEs and 5-epoch classifiers: thresholds relaxed so that something is kept
              "--trainer.callbacks.init_args.confidence_threshold=0.3",
              "--trainer.callbacks.init_args.min_diversity_distance=1.0",
              "--trainer.callbacks.init_args.min_per_class=10", "--trainer.callbacks.init_args.max_per_class=40"])
    for teacher_id in (0, 1):
        report = json.loads(layout.selection_report_file(run_dir, teacher_id).read_text())
        assert report["pool_size"] == 500 and sum(report["rejected_by"].values()) + report["kept"] == 500
        assert report["kept"] > 0 and report["nn_distance"]["min"] >= 2.0
        assert sum(n > 0 for n in report["pool_label_counts"].values()) >= 3  # the VAE decodes several digits
    reports = evaluate_command(run_dir=str(run_dir), data_dir=str(mnist_dir), reference=False)
    assert set(reports) == {0, 1} and reports[0]["criteria"]["min_nn_distance"]["passed"]
    combine_command(run_dir=str(run_dir))
    meta = json.loads((run_dir / "synthetic" / "combined_metadata.json").read_text())
    assert meta["num_samples"] == sum(r["num_samples"] for r in reports.values())
