"""Generator families end to end on tiny data: conditional MLP/conv VAEs, public prior, hybrid, PATE selection."""

import csv
import json

import pytest
import torch

from pate_lightning.pipeline.cli import cli_main
from pate_lightning.candidates.combine import combine_command
from pate_lightning.data import font_digits
from pate_lightning.evaluation.command import evaluate_command
from pate_lightning.generators.decoders import build_vae, decoder_from_states, decoder_spec
from pate_lightning.io import save_torch
from pate_lightning.stacked.layers import member_state_dict
from pate_lightning.generators.vae import reset_members
from pate_lightning.generators.module import TeacherVAEModule
from tests.conftest import REPO
from tests.synthetic_helpers import generate, make_run


@pytest.mark.parametrize("architecture", ["mlp", "conv"])
def test_stacked_conditional_vae_member_equals_alone(architecture):
    encoder, decoder = build_vae(architecture, 3, 5, (32,), 10)
    reset_members(encoder, [torch.Generator().manual_seed(i) for i in range(3)])
    reset_members(decoder, [torch.Generator().manual_seed(i) for i in range(3)])
    images, labels, z = torch.rand(3, 4, 1, 28, 28), torch.randint(10, (3, 4)), torch.randn(3, 4, 5)
    mu, logvar = encoder(images, labels)
    out = decoder(z, labels)
    assert mu.shape == logvar.shape == (3, 4, 5) and out.shape == (3, 4, 784)
    alone = decoder_from_states([member_state_dict(decoder, 1)])  # member 1 as its own one-member stack
    assert torch.allclose(alone(z[1:2], labels[1:2]), out[1:2], atol=1e-6)
    spec = decoder_spec(member_state_dict(decoder, 1))
    assert (spec.architecture, spec.latent_dim, spec.num_classes) == (architecture, 5, 10)
    # the label matters
    assert not torch.allclose(decoder(z, (labels + 1) % 10), out)
    assert not any("norm" in name.lower() for name, _ in decoder.named_modules())  # no BatchNorm (DP-SGD)


def test_loss_is_per_sample_for_dp_subclasses():
    module = TeacherVAEModule(teacher_ids=[0, 1], latent_dim=4, hidden_dims=(16,), conditional=True, architecture="conv")
    recon, kl = module.per_sample_losses(torch.rand(2, 3, 1, 28, 28), torch.randint(10, (2, 3)))
    assert recon.shape == kl.shape == (2, 3) and (kl >= 0).all()
    per_teacher, parts = module.loss((torch.rand(2, 3, 1, 28, 28), torch.randint(10, (2, 3))))
    assert per_teacher.shape == (2,) and set(parts) == {"recon", "kl"}


def write_conditional_decoder(run_dir, teacher_id, latent_dim=4):
    _, decoder = build_vae("mlp", 1, latent_dim, (16,), 10)
    reset_members(decoder, [torch.Generator().manual_seed(teacher_id)])
    return save_torch(run_dir / "teacher_vaes" / f"teacher_{teacher_id}" / "decoder.pth", member_state_dict(decoder, 0))


def read_labels(run_dir, teacher_id):
    with open(run_dir / "teachers" / f"teacher_{teacher_id}" / "labels.csv", newline="") as handle:
        return [int(row[1]) for row in list(csv.reader(handle))[1:]]


def test_conditional_generation_returns_exactly_the_requested_counts(tmp_path):
    data_dir, run_dir = make_run(tmp_path)
    for teacher_id in (0, 1):
        write_conditional_decoder(run_dir, teacher_id)
    counts = [3, 0, 5, 1, 2, 2, 2, 2, 2, 7]
    generate(data_dir, run_dir, [0, 1], batch_size=4, data_args={"class_counts": counts},
             selection="pate", min_diversity_distance=0.0, max_per_class=1000)
    for teacher_id in (0, 1):
        labels = read_labels(run_dir, teacher_id)
        assert torch.bincount(torch.tensor(labels), minlength=10).tolist() == counts
        report = json.loads((run_dir / "teachers" / f"teacher_{teacher_id}" / "selection_report.json").read_text())
        assert report["privacy"]["reads_private_data"] is False and report["selection"] == "pate"
        assert report["generation"]["class_counts"] == counts and report["nn_distance"] is None
        assert "classifier" not in report["inputs"]  # no teacher classifier was read


def test_teacher_filters_check_the_requested_class(tmp_path):
    data_dir, run_dir = make_run(tmp_path, teachers=(0,))
    write_conditional_decoder(run_dir, 0)
    generate(data_dir, run_dir, [0], pool_size=200)
    report = json.loads((run_dir / "teachers/teacher_0/selection_report.json").read_text())
    # the random classifier rarely agrees with the requested class: every disagreement is rejected
    assert report["label_mismatch"] > 0
    assert report["rejected_by"]["low_confidence"] >= report["label_mismatch"]
    assert report["privacy"]["reads_private_data"] is True


def fit(config, *args):
    cli_main(["fit", "--config", str(REPO / "configs/generators" / config), "--trainer.accelerator=cpu",
              "--trainer.enable_progress_bar=false", "--model.latent_dim=4", "--model.hidden_dims=[16]", *args])


def scalar_tags(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return set(events.Tags()["scalars"])


def test_public_prior_then_public_and_hybrid_families_then_pate_selection(tmp_path, monkeypatch, caplog):
    def no_mnist(*args, **kwargs):
        raise AssertionError("the public prior read MNIST")

    every_font = font_digits.font_files
    monkeypatch.setattr(font_digits, "font_files", lambda: every_font()[:2])
    monkeypatch.setattr(font_digits, "PER_CLASS", {True: 3, False: 1})
    data_dir, run_dir = make_run(tmp_path, teachers=(0, 1))
    public_dir = tmp_path / "public_vae"
    from pate_lightning.data import sources

    with monkeypatch.context() as patch:
        patch.setitem(sources.DATASETS, "mnist", no_mnist)
        with caplog.at_level("INFO", logger="pate_lightning.pipeline.runner"):
            fit("public_prior.yaml", f"--data.data_dir={data_dir}", f"--data.run_dir={public_dir}", "--trainer.max_epochs=1")
    assert any(r.getMessage().startswith("[public_prior] 1/1 teachers") for r in caplog.records)  # not [teacher_vae]
    vae = public_dir / "teacher_vaes/teacher_0/vae_full.pth"
    prior_report = json.loads((vae.parent / "training_report.json").read_text())
    assert prior_report["privacy"]["reads_private_data"] is False and prior_report["conditional"] is True

    for family, teachers in (("public", "[0]"), ("hybrid", "[1]")):
        fit(f"{family}.yaml", f"--data.data_dir={data_dir}", f"--data.run_dir={run_dir}", f"--model.public_vae={vae}",
            f"--data.teacher_ids={teachers}", "--data.num_teachers=4", "--trainer.max_epochs=1")
    public = json.loads((run_dir / "teacher_vaes/teacher_0/training_report.json").read_text())
    hybrid = json.loads((run_dir / "teacher_vaes/teacher_1/training_report.json").read_text())
    assert public["privacy"]["reads_private_data"] is False and public["epochs"] == 0
    assert hybrid["privacy"]["reads_private_data"] is True and hybrid["epochs"] == 1
    # TensorBoard: the prior under its own name; no loss for the public family, which trained nothing
    assert scalar_tags(public_dir / "logs/public_prior/teacher_0") >= {"train/recon", "train/kl"}
    assert not (public_dir / "logs/teacher_vae").exists()
    assert not scalar_tags(run_dir / "logs/teacher_vae/teacher_0") & {"train/recon", "train/kl", "train/loss"}
    assert "train/recon" in scalar_tags(run_dir / "logs/teacher_vae/teacher_1")
    # public: every teacher's decoder is the public one, unchanged
    public_decoder = torch.load(run_dir / "teacher_vaes/teacher_0/decoder.pth", weights_only=True)
    prior_decoder = torch.load(vae.parent / "decoder.pth", weights_only=True)
    assert all(torch.equal(public_decoder[k], prior_decoder[k]) for k in prior_decoder)

    cli_main(["predict", "--config", str(REPO / "configs/generators/generate_pate.yaml"), "--trainer.accelerator=cpu",
              "--trainer.enable_progress_bar=false", f"--data.data_dir={data_dir}", f"--data.run_dir={run_dir}",
              "--data.teacher_ids=[0,1]", "--data.pool_size=20", "--ensemble_size=1"])
    evaluate_command(run_dir=str(run_dir), data_dir=str(data_dir), reference=False)  # later stages read these files
    assert all((run_dir / f"teachers/teacher_{t}/evaluation_report.json").is_file() for t in (0, 1))
    combine_command(run_dir=str(run_dir), start_id=0, end_id=0, name="public_pate")
    stages = json.loads((run_dir / "synthetic/public_pate_metadata.json").read_text())["privacy"]["stages"]
    assert [(s["stage"], s["name"], s["reads_private_data"]) for s in stages] == [
        ("generator", "public", False), ("public_prior", "per_teacher", False), ("selection", "pate", False)]
    combine_command(run_dir=str(run_dir), name="both")
    stages = json.loads((run_dir / "synthetic/both_metadata.json").read_text())["privacy"]["stages"]
    assert any(s["reads_private_data"] for s in stages)  # the hybrid teacher read its shard
