"""LabelingCallback on hand-built candidates, driven through its predict hooks."""

import csv
import json
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from pate_lightning.candidates.labeling import LabelingCallback
from pate_lightning.candidates.latents import LatentDataModule
from pate_lightning.candidates.selection import class_quotas, select_candidates
from tests.synthetic_helpers import make_run


class ScriptedClassifier(nn.Module):
    """Returns the log-probabilities of a script, batch after batch: (labels, confidences) per call."""

    def __init__(self, script):
        super().__init__()
        self.script = list(script)

    def forward(self, images):
        labels, confidences = self.script.pop(0)
        probs = ((1 - confidences) / 9).unsqueeze(1).repeat(1, 10)
        probs[torch.arange(len(labels)), labels] = confidences
        return probs.log()


def run_callback(tmp_path, batches, script, teacher_id=0, **settings):
    """Feed ``batches`` (each (B, 1, 28, 28)) to the callback as teacher ``teacher_id``'s predictions."""
    data_dir, run_dir = make_run(tmp_path, teachers=(teacher_id,))
    datamodule = LatentDataModule(data_dir=str(data_dir), run_dir=str(run_dir), teacher_ids=[teacher_id],
                                  pool_size=sum(len(b) for b in batches))
    datamodule.setup("predict")
    trainer = SimpleNamespace(datamodule=datamodule)
    module = SimpleNamespace(teacher_ids=[teacher_id], device=torch.device("cpu"))
    callback = LabelingCallback(**settings)
    callback.setup(trainer, module, "predict")
    callback.pools[teacher_id].classifier = ScriptedClassifier(script)
    callback.on_predict_start(trainer, module)
    for index, batch in enumerate(batches):
        callback.on_predict_batch_end(trainer, module, batch.unsqueeze(0), None, index)
    callback.on_predict_end(trainer, module)
    folder = run_dir / "teachers" / f"teacher_{teacher_id}"
    with open(folder / "labels.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    return (
        torch.load(folder / "synthetic_samples.pt", weights_only=True),
        rows,
        json.loads((folder / "selection_report.json").read_text()),
        datamodule,
    )


def blank(value):
    return torch.full((1, 28, 28), value)


def test_each_rule_rejects_its_candidate(tmp_path):
    data_dir, run_dir = make_run(tmp_path / "probe", teachers=(0,))
    probe = LatentDataModule(data_dir=str(data_dir), run_dir=str(run_dir), teacher_ids=[0])
    probe.setup("predict")
    shard_image = probe.shard_images(0)[0]
    batch = torch.stack([
        shard_image,  # 0: a copy of a shard image, confident -> memorized
        blank(0.9),  # 1: confident, far from the shard -> kept
        blank(0.9),  # 2: the same image again, less confident -> diversity
        blank(0.5),  # 3: confidence 0.6 < 0.9 -> low_confidence
        blank(0.2),  # 4: class 1 at 0.75, rare threshold 0.7 -> kept
        blank(0.35),  # 5: class 1 at 0.74 -> kept (far enough from 4)
    ])
    labels = torch.tensor([0, 0, 0, 0, 1, 1])
    confidences = torch.tensor([0.99, 0.98, 0.97, 0.6, 0.75, 0.74])
    samples, rows, report, _ = run_callback(
        tmp_path / "run", [batch], [(labels, confidences)], rare_class_thresholds={1: 0.7},
        min_nn_distance=2.0, min_diversity_distance=3.0, quota=False,
    )
    assert report["rejected_by"] == {"low_confidence": 1, "memorized": 1, "diversity": 1, "quota": 0}
    assert report["funnel"] == {"pool": 6, "confident": 5, "non_memorized": 4, "diverse": 3, "kept": 3}
    assert sum(report["rejected_by"].values()) + report["kept"] == report["pool_size"] == 6
    assert torch.equal(samples, batch[[1, 4, 5]])  # class by class, most confident first
    assert rows == [["index", "label", "confidence"], ["0", "0", "0.980000"], ["1", "1", "0.750000"],
                    ["2", "1", "0.740000"]]
    assert report["nn_distance"]["min"] >= 2.0 and not report["empty"]


def test_quotas_follow_the_shard_and_shortfall_is_reported(tmp_path):
    gen = torch.Generator().manual_seed(0)
    batches = [torch.rand(40, 1, 28, 28, generator=gen).round() for _ in range(3)]  # far apart, far from the shard
    script = [(torch.arange(40) % 2, 0.91 + 0.08 * torch.rand(40, generator=gen)) for _ in range(3)]
    samples, rows, report, datamodule = run_callback(
        tmp_path, batches, script, min_per_class=5, max_per_class=30, min_diversity_distance=0.0,
    )
    distribution = json.loads((datamodule.run_dir / "teachers/teacher_0/metadata.json").read_text())["class_distribution"]
    quotas = class_quotas(distribution, 5, 30)
    assert [report["per_class"][str(c)]["quota"] for c in range(10)] == quotas.tolist()
    assert [report["per_class"][str(c)]["kept"] for c in (0, 1)] == [min(60, int(quotas[0])), min(60, int(quotas[1]))]
    assert report["shortfall"] == {str(c): 5 for c in range(2, 10)}  # never padded
    assert report["rejected_by"]["quota"] == 120 - report["kept"] and len(samples) == report["kept"]
    kept_confidences = [float(r[2]) for r in rows[1:] if r[1] == "0"]
    assert kept_confidences == sorted(kept_confidences, reverse=True)  # highest confidence fills the quota first


def test_batchwise_filtering_equals_selecting_the_whole_pool(tmp_path):
    gen = torch.Generator().manual_seed(1)
    pool = (torch.rand(150, 1, 28, 28, generator=gen) > 0.5).float()
    pool[10:20] = pool[0]  # near-duplicates for the diversity rule
    labels = torch.randint(0, 10, (150,), generator=gen)
    confidences = torch.rand(150, generator=gen) * 0.3 + 0.7
    settings = dict(confidence_threshold=0.8, rare_class_thresholds={2: 0.75}, min_nn_distance=2.0,
                    min_diversity_distance=11.0, min_per_class=3, max_per_class=8)
    batches = [pool[i : i + 64] for i in range(0, 150, 64)]
    script = [(labels[i : i + 64], confidences[i : i + 64]) for i in range(0, 150, 64)]
    samples, rows, report, datamodule = run_callback(tmp_path, batches, script, **settings)
    distribution = json.loads((datamodule.run_dir / "teachers/teacher_0/metadata.json").read_text())["class_distribution"]
    whole = select_candidates(
        pool, labels, confidences, datamodule.shard_images(0), quotas=class_quotas(distribution, 3, 8),
        **{k: v for k, v in settings.items() if k != "max_per_class"},
    )
    assert torch.equal(samples, pool[whole.kept_indices])
    assert report["rejected_by"] == whole.rejected_by
    assert [int(r[1]) for r in rows[1:]] == whole.kept_labels.tolist()


def test_nothing_kept_is_reported_not_a_crash(tmp_path):
    batch = torch.rand(8, 1, 28, 28)
    with pytest.warns(UserWarning, match="no candidate survived"):
        samples, rows, report, _ = run_callback(tmp_path, [batch], [(torch.zeros(8, dtype=torch.long), torch.full((8,), 0.5))])
    assert samples.shape == (0, 1, 28, 28) and samples.dtype == torch.float32
    assert rows == [["index", "label", "confidence"]]
    assert report["empty"] and report["kept"] == 0 and report["rejected_by"]["low_confidence"] == 8
    assert "no candidate survived" in report["warning"] and report["mean_confidence"] is None


@pytest.mark.parametrize("bad", [
    {"confidence_threshold": -0.1}, {"confidence_threshold": 1.1}, {"rare_class_thresholds": {1: 0.95}},
    {"rare_class_thresholds": {11: 0.5}}, {"min_nn_distance": -1.0}, {"min_diversity_distance": -1.0},
    {"min_per_class": 10, "max_per_class": 5}, {"normalization": "imagenet"},
])
def test_out_of_range_settings_are_rejected(bad):
    with pytest.raises(ValueError):
        LabelingCallback(**bad)


def test_every_shipped_config_builds_its_labeling_callback():
    """configs/generate.yaml, demo.yaml and configs/generators/*.yaml keep working with the callback's class path and args."""
    import importlib

    import yaml

    from tests.conftest import REPO

    def callbacks(node):
        if isinstance(node, dict):
            if str(node.get("class_path", "")).endswith("LabelingCallback"):
                yield node
            for value in node.values():
                yield from callbacks(value)
        elif isinstance(node, list):
            for value in node:
                yield from callbacks(value)

    found = 0
    for path in sorted((REPO / "configs").rglob("*.yaml")):
        for entry in callbacks(yaml.safe_load(path.read_text())):
            module, _, name = entry["class_path"].rpartition(".")
            callback = getattr(importlib.import_module(module), name)(**(entry.get("init_args") or {}))
            assert isinstance(callback, LabelingCallback), path
            found += 1
    assert found >= 3
