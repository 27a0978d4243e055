"""The generate stage end to end: latents, decoding, files, determinism, grouping, errors, CLI."""

import csv
import json
import shutil

import pytest
import torch

from pate_lightning.pipeline.cli import cli_main
from pate_lightning.candidates.latents import LatentDataModule, LatentLoader, draw_latents
from pate_lightning.errors import PateError
from pate_lightning.io import load_state_dict, save_torch
from tests.conftest import REPO
from tests.synthetic_helpers import generate, make_run, write_classifier, write_decoder

OUTPUTS = ("synthetic_samples.pt", "labels.csv", "selection_report.json")


def outputs(run_dir, teacher_id):
    folder = run_dir / "teachers" / f"teacher_{teacher_id}"
    return {name: (folder / name).read_bytes() for name in OUTPUTS}


def test_latent_mixing_and_noise_statistics():
    z = draw_latents(40000, 8, mixing=0.3, noise=0.1, gen=torch.Generator().manual_seed(0))
    mixed, plain = z[:12000], z[12000:]
    # plain rows: N(0, 1) + 0.1 N(0, 1) -> variance 1.01; mixed rows: E[a^2 + (1-a)^2], a ~ U[0.6, 1] = 0.7067, + 0.01
    assert plain.var().item() == pytest.approx(1.01, abs=0.02)
    assert mixed.var().item() == pytest.approx(0.7167, abs=0.02)
    assert z.mean().abs().item() < 0.01
    prior = draw_latents(1000, 8, mixing=0.0, noise=0.0, gen=torch.Generator().manual_seed(1))
    assert torch.equal(prior, torch.randn(1000, 8, generator=torch.Generator().manual_seed(1)))


def test_latent_loader_is_per_teacher_and_repeatable():
    together = list(LatentLoader([0, 1], 6, pool_size=250, batch_size=100, mixing=0.3, noise=0.1, seed=123))
    alone = list(LatentLoader([1], 6, pool_size=250, batch_size=100, mixing=0.3, noise=0.1, seed=123))
    assert [tuple(b.shape) for b in together] == [(2, 100, 6), (2, 100, 6), (2, 50, 6)]
    for both, one in zip(together, alone):
        assert torch.equal(both[1], one[0])  # teacher 1 draws the same whatever its group
        assert not torch.equal(both[0], both[1])  # and differs from teacher 0
    again = list(LatentLoader([0, 1], 6, pool_size=250, batch_size=100, mixing=0.3, noise=0.1, seed=123))
    assert all(torch.equal(a, b) for a, b in zip(together, again))


def test_predict_writes_datasets_in_the_seed_format(tmp_path):
    data_dir, run_dir = make_run(tmp_path)
    generate(data_dir, run_dir, [0, 1], save_candidates=True, save_grid=True)
    for teacher_id in (0, 1):
        folder = run_dir / "teachers" / f"teacher_{teacher_id}"
        samples = torch.load(folder / "synthetic_samples.pt", weights_only=True)
        with open(folder / "labels.csv", newline="") as handle:
            rows = list(csv.reader(handle))
        report = json.loads((folder / "selection_report.json").read_text())
        assert rows[0] == ["index", "label", "confidence"]
        assert samples.dtype == torch.float32 and samples.shape[1:] == (1, 28, 28) and len(samples) == len(rows) - 1
        assert 0 <= samples.min() and samples.max() <= 1
        assert [int(r[0]) for r in rows[1:]] == list(range(len(samples)))
        assert all(float(r[2]) >= 0.5 for r in rows[1:])
        assert report["pool_size"] == 300 and report["kept"] == len(samples) > 0
        assert sum(report["rejected_by"].values()) + report["kept"] == 300
        assert report["seeds"] == {"seed": 123, "teacher_seed": [123, teacher_id]}
        assert set(report["inputs"]) == {"decoder", "classifier", "metadata"}
        assert report["inputs"]["decoder"]["path"] == f"teacher_vaes/teacher_{teacher_id}/decoder.pth"
        pool = torch.load(run_dir / "candidates" / f"candidates_teacher_{teacher_id}.pt", weights_only=True)
        assert pool["images"].shape == (300, 1, 28, 28)
        assert pool["metadata"]["approach"] == "per_teacher_vae" and pool["metadata"]["latent_dim"] == 4
        assert (run_dir / "candidates" / f"candidates_teacher_{teacher_id}.png").read_bytes()[:4] == b"\x89PNG"


def test_same_seed_same_bytes_and_grouping_independence(tmp_path):
    data_dir, run_a = make_run(tmp_path / "a")
    run_b = tmp_path / "b" / "run"
    shutil.copytree(run_a, run_b)
    generate(data_dir, run_a, [0, 1])
    generate(data_dir, run_b, [1])  # teacher 1 alone
    assert outputs(run_a, 1) == outputs(run_b, 1)
    first = outputs(run_a, 0)
    generate(data_dir, run_a, [0, 1])  # rerun: byte-identical files
    assert outputs(run_a, 0) == first
    assert first != outputs(run_a, 1)  # teachers differ
    generate(data_dir, run_b, [0], data_args={"seed": 7})
    assert outputs(run_b, 0)["synthetic_samples.pt"] != first["synthetic_samples.pt"]


def test_bad_inputs_fail_before_any_output(tmp_path):
    data_dir, run_dir = make_run(tmp_path, teachers=(0, 1))
    (run_dir / "trained_nets" / "1" / "model.pth").unlink()
    with pytest.raises(PateError, match=r"teacher 1 classifier not found") as error:
        generate(data_dir, run_dir, [0, 1])
    assert "trained_nets/1/model.pth" in str(error.value)
    assert not (run_dir / "teachers" / "teacher_0" / "selection_report.json").exists()
    write_classifier(run_dir, 1)
    with pytest.raises(PateError, match=r"teacher_2/decoder.pth: teacher 2 decoder not found"):
        generate(data_dir, run_dir, [0, 2])
    with pytest.raises(PateError, match=r"teacher 0: decoder has latent size 4 but latent_dim is set to 32"):
        generate(data_dir, run_dir, [0], data_args={"latent_dim": 32})
    write_decoder(run_dir, 1, latent_dim=6)
    with pytest.raises(PateError, match="different sizes"):
        generate(data_dir, run_dir, [0, 1])
    save_torch(run_dir / "teacher_vaes" / "teacher_3" / "decoder.pth", {"weight": torch.zeros(2)})
    with pytest.raises(PateError, match="teacher 3: not a VAE decoder"):
        generate(data_dir, run_dir, [3])
    for bad in ({"confidence_threshold": 1.5}, {"rare_class_thresholds": {1: 0.95}}, {"min_nn_distance": -1},
                {"rare_class_thresholds": {10: 0.5}}, {"min_per_class": 600}):
        with pytest.raises(ValueError):
            generate(data_dir, run_dir, [0], **bad)
    with pytest.raises(ValueError, match="latent_mixing"):
        LatentDataModule(latent_mixing=1.5)
    assert not list((run_dir / "teachers").rglob("selection_report.json"))
    assert not list((run_dir / "teachers").rglob("synthetic_samples.pt"))


def test_missing_shard_file_is_a_clear_error(tmp_path):
    datamodule = LatentDataModule(data_dir=str(tmp_path), run_dir=str(tmp_path / "run"))
    with pytest.raises(PateError, match="shard file not found"):
        datamodule.setup("predict")


def predict_args(run_dir, data_dir, *extra):
    return [
        "predict", "--config", str(REPO / "configs/generate.yaml"), f"--data.data_dir={data_dir}",
        f"--data.run_dir={run_dir}", "--data.pool_size=200", "--trainer.accelerator=cpu",
        "--trainer.enable_progress_bar=false", "--trainer.callbacks.init_args.confidence_threshold=0.5",
        "--trainer.callbacks.init_args.rare_class_thresholds={3: 0.4}",
        "--trainer.callbacks.init_args.min_per_class=2", *extra,
    ]


def test_cli_predict_groups_resumes_and_matches_library(tmp_path):
    data_dir, run_dir = make_run(tmp_path / "cli")
    cli_main(predict_args(run_dir, data_dir, "--data.teacher_ids=[0,1]", "--ensemble_size=1"))
    report = json.loads((run_dir / "teachers/teacher_1/selection_report.json").read_text())
    assert report["pool_size"] == 200 and report["thresholds"]["rare_class_thresholds"] == {"3": 0.4}
    stamp = (run_dir / "teachers/teacher_0/labels.csv").stat().st_mtime_ns
    cli_main(predict_args(run_dir, data_dir, "--data.teacher_ids=[0,1]"))  # done: skipped
    assert (run_dir / "teachers/teacher_0/labels.csv").stat().st_mtime_ns == stamp
    first = outputs(run_dir, 1)
    cli_main(predict_args(run_dir, data_dir, "--data.teacher_ids=[0,1]", "--overwrite=true"))  # one group of two
    assert outputs(run_dir, 1) == first
    state = load_state_dict(run_dir / "teacher_vaes/teacher_0/decoder.pth", "decoder")
    assert state["hidden.0.weight"].shape[1] == report["generation"]["latent_dim"]


def test_generate_config_holds_the_guides_defaults():
    import yaml

    config = yaml.safe_load((REPO / "configs/generate.yaml").read_text())
    assert config["return_predictions"] is False  # batches are consumed by the callback, never accumulated
    (labeling,) = config["trainer"]["callbacks"]
    assert labeling["class_path"] == "pate_lightning.candidates.labeling.LabelingCallback"
    settings, data = labeling["init_args"], config["data"]["init_args"]
    assert (settings["confidence_threshold"], settings["min_nn_distance"], settings["min_diversity_distance"],
            settings["min_per_class"], settings["max_per_class"]) == (0.9, 2.0, 3.0, 150, 500)
    assert (data["pool_size"], data["latent_mixing"], data["latent_noise"], data["seed"]) == (20000, 0.3, 0.1, 123)
    assert config["model"]["class_path"] == "pate_lightning.candidates.generator.CandidateGenerator"
