import json

import pytest
import torch
from lightning.pytorch import Trainer

from pate_lightning.generators.kl_annealing import KLAnnealing, kl_beta
from pate_lightning.generators.export import VAEExport
from pate_lightning.data.datamodule import ShardDataModule
from pate_lightning.stacked.layers import member_state_dict
from pate_lightning.generators.vae import Decoder
from pate_lightning.generators.module import TeacherVAEModule
from tests.helpers import torch_calls, write_fake_mnist


def fake_datamodule(tmp_path, teacher_ids, augment=True, batch_size=8):
    data_dir = write_fake_mnist(tmp_path / "data", train=120)
    dm = ShardDataModule(
        data_dir=str(data_dir), run_dir=str(tmp_path / "run"), num_teachers=4,
        teacher_ids=teacher_ids, batch_size=batch_size, augment=augment, seed=7,
    )
    dm.setup("fit")
    return dm


def fit(tmp_path, teacher_ids, epochs=1, callbacks=()):
    dm = fake_datamodule(tmp_path, teacher_ids)
    model = TeacherVAEModule(teacher_ids=teacher_ids, latent_dim=4, hidden_dims=(16,), seed=7)
    trainer = Trainer(
        max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
        callbacks=[KLAnnealing(2), *callbacks],
    )
    trainer.fit(model, datamodule=dm)
    return model, dm


def test_shapes_and_ranges():
    model = TeacherVAEModule(teacher_ids=[0, 1, 2], latent_dim=5, hidden_dims=(32, 16))
    images = torch.rand(3, 4, 1, 28, 28)
    recon = model(images)
    assert recon.shape == images.shape and recon.min() >= 0 and recon.max() <= 1
    mu, logvar = model.encode(images)
    assert mu.shape == logvar.shape == (3, 4, 5)
    samples = model.sample(6, [torch.Generator().manual_seed(i) for i in range(3)])
    assert samples.shape == (3, 6, 1, 28, 28) and 0 <= samples.min() and samples.max() <= 1


def test_forward_is_deterministic():
    model = TeacherVAEModule(latent_dim=4, hidden_dims=(8,))
    images = torch.rand(1, 3, 1, 28, 28)
    assert torch.equal(model(images), model(images))


def test_kl_beta_schedule():
    assert [kl_beta(e, 20) for e in (0, 10, 20, 30)] == [0.0, 0.5, 1.0, 1.0]
    with pytest.raises(ValueError):
        KLAnnealing(-1)


def test_loss_is_summed_over_pixels_and_latents_and_averaged_over_batch():
    model = TeacherVAEModule(latent_dim=3, hidden_dims=(8,))
    model.beta = 0.0
    images = torch.rand(1, 5, 1, 28, 28)
    loss, logs = model._shared_step((images, None))
    # beta = 0: loss is reconstruction only, of the order of 784 * BCE (not a per-pixel mean)
    assert loss.item() == pytest.approx(logs["recon"].item())
    assert loss.item() > 100


def test_teacher_initial_weights_do_not_depend_on_group():
    alone = TeacherVAEModule(teacher_ids=[2], latent_dim=4, hidden_dims=(8,))
    grouped = TeacherVAEModule(teacher_ids=[0, 2, 3], latent_dim=4, hidden_dims=(8,))
    for name, tensor in member_state_dict(alone.decoder, 0).items():
        assert torch.equal(tensor, member_state_dict(grouped.decoder, 1)[name])


def test_teacher_in_ensemble_matches_teacher_alone_after_one_epoch(tmp_path):
    grouped, _ = fit(tmp_path / "g", [0, 1, 2])
    alone, _ = fit(tmp_path / "a", [1])
    for part in ("encoder", "decoder"):
        ours = member_state_dict(getattr(grouped, part), 1)
        theirs = member_state_dict(getattr(alone, part), 0)
        for name in ours:
            assert torch.allclose(ours[name], theirs[name], rtol=1e-4, atol=1e-6), name


def test_loader_batches_per_teacher_streams(tmp_path):
    dm = fake_datamodule(tmp_path, [0, 1], augment=False, batch_size=7)
    loader = dm.train_dataloader()
    batches = list(loader)
    assert len(batches) == len(loader) == 5  # 30 images per shard, batches of 7
    images, labels, theta = batches[0]
    assert images.shape == (2, 7, 1, 28, 28) and labels.shape == (2, 7) and theta is None
    assert images.dtype == torch.uint8  # scaled to [0, 1] on the device, after the transfer
    seen = torch.cat([b[1][0] for b in batches])
    assert sorted(seen.tolist()) == sorted(dm.shard_labels(0).tolist())


def test_loader_draws_for_all_teachers_in_one_call_per_step(tmp_path):
    def loader(teacher_ids):
        return fake_datamodule(tmp_path / str(len(teacher_ids)), teacher_ids, batch_size=7).train_dataloader()

    def first_two_batches(loader):
        batches = iter(loader)
        return next(batches), next(batches)

    assert torch_calls(first_two_batches, loader([0, 1, 2, 3])) == torch_calls(first_two_batches, loader([2]))
    stacked, alone = first_two_batches(loader([0, 1, 2, 3])), first_two_batches(loader([2]))
    for (images, labels, theta), (images_alone, labels_alone, theta_alone) in zip(stacked, alone):
        assert torch.equal(images[2], images_alone[0]) and torch.equal(theta[2], theta_alone[0])


def test_batch_size_is_reduced_to_a_small_shard(tmp_path):
    dm = fake_datamodule(tmp_path, [0], batch_size=500)
    assert dm.train_dataloader().batch_size == 30


def test_export_writes_seed_layout_and_report(tmp_path):
    run_dir = tmp_path / "run"
    model, dm = fit(tmp_path, [0, 3], epochs=2, callbacks=[VAEExport(run_dir)])
    report = json.loads((run_dir / "teacher_vaes/teacher_3/training_report.json").read_text())
    assert report["teacher_id"] == 3 and report["epochs"] == 2 and report["shard_size"] == 30
    assert [row["beta"] for row in report["history"]] == [0.0, 0.5]
    assert {"recon", "kl", "loss", "beta", "epoch"} <= set(report["history"][0])
    assert report["hyperparameters"]["latent_dim"] == 4 and report["hyperparameters"]["kl_annealing_epochs"] == 2
    state = torch.load(run_dir / "teacher_vaes/teacher_3/decoder.pth", weights_only=True)
    decoder = Decoder.from_state_dicts([state])
    assert decoder.latent_dim == 4
    assert torch.equal(state["out.weight"], model.decoder.out.weight[1].detach().t())
    full = torch.load(run_dir / "teacher_vaes/teacher_3/vae_full.pth", weights_only=True)
    assert {k.split(".")[0] for k in full} == {"encoder", "decoder"}
    assert (run_dir / "teacher_vaes/teacher_3/samples.png").read_bytes()[:4] == b"\x89PNG"


def test_tensorboard_has_per_teacher_scalars(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = tmp_path / "run"
    fit(tmp_path, [0, 1], epochs=2, callbacks=[VAEExport(run_dir)])
    for teacher_id in (0, 1):
        events = EventAccumulator(str(run_dir / "logs/teacher_vae" / f"teacher_{teacher_id}"))
        events.Reload()
        assert {"train/recon", "train/kl", "train/beta", "train/loss"} <= set(events.Tags()["scalars"])
        assert [e.step for e in events.Scalars("train/kl")] == [0, 1]
        assert "samples" in events.Tags()["images"]


def test_tensorboard_sample_grids_every_ten_epochs_and_hparams(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = tmp_path / "run"
    fit(tmp_path, [0], epochs=10, callbacks=[VAEExport(run_dir)])
    events = EventAccumulator(str(run_dir / "logs/teacher_vae/teacher_0"))
    events.Reload()
    assert [e.step for e in events.Images("samples")] == [9, 10]  # after epoch 10 (step 9), then the export's
    assert "final/recon" in events.Tags()["scalars"]  # the hparams' metric, in the teacher's own run
    assert (run_dir / "logs/teacher_vae/teacher_0").is_dir() and not [
        p for p in (run_dir / "logs/teacher_vae/teacher_0").iterdir() if p.is_dir()]  # no timestamped sub-run


def test_epoch_metrics_reach_a_lightning_logger_with_few_batches(tmp_path):
    from lightning.pytorch.loggers import CSVLogger

    dm = fake_datamodule(tmp_path, [0])  # 30 images, batch 8: 4 batches an epoch, fewer than log_every_n_steps
    model = TeacherVAEModule(teacher_ids=[0], latent_dim=4, hidden_dims=(16,), seed=7)
    logger = CSVLogger(str(tmp_path / "csv"), name="vae")
    Trainer(max_epochs=2, accelerator="cpu", logger=logger, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False, callbacks=[KLAnnealing(2)]).fit(model, datamodule=dm)
    header = (tmp_path / "csv/vae/version_0/metrics.csv").read_text().splitlines()[0].split(",")
    assert {"train/recon", "train/kl", "train/loss", "train/beta"} <= set(header)


def test_member_state_dict_is_an_ordinary_linear_state_dict():
    from torch import nn

    from pate_lightning.stacked.layers import EnsembleLinear, load_member_state_dict

    stacked = EnsembleLinear(3, 5, 4)
    for k in range(3):
        stacked.reset_member(k, torch.Generator().manual_seed(k))
    x = torch.randn(3, 2, 5)
    plain = nn.Linear(5, 4)
    plain.load_state_dict(member_state_dict(stacked, 2))
    assert torch.allclose(plain(x[2]), stacked(x)[2], atol=1e-6)
    # and back: a plain state_dict loads into a member slot
    load_member_state_dict(stacked, 0, plain.state_dict())
    assert torch.allclose(stacked(x)[0], plain(x[0]), atol=1e-6)
    with pytest.raises(ValueError, match="shape"):
        load_member_state_dict(stacked, 0, nn.Linear(6, 4).state_dict())


def test_stacked_affine_draws_match_per_teacher_draws():
    from pate_lightning.data.augment import affine_from_uniform, draw_affine

    gens = [torch.Generator().manual_seed(s) for s in (1, 2, 3)]
    stacked = affine_from_uniform(torch.stack([torch.rand(5, 4, generator=g) for g in gens]))  # (3, 5, 2, 3)
    alone = torch.stack([draw_affine(5, torch.Generator().manual_seed(s)) for s in (1, 2, 3)])
    assert stacked.shape == (3, 5, 2, 3)
    torch.testing.assert_close(stacked, alone)
    assert not torch.equal(stacked[0], stacked[1])  # each teacher its own draws


def test_batches_are_scaled_to_unit_range_after_transfer(tmp_path):
    dm = fake_datamodule(tmp_path, [0, 1], augment=True, batch_size=7)
    images, labels, theta = next(iter(dm.train_dataloader()))
    scaled, same_labels = dm.on_after_batch_transfer((images, labels, theta), 0)
    assert scaled.dtype == torch.float32 and 0 <= scaled.min() and scaled.max() <= 1
    torch.testing.assert_close(scaled, images.float() / 255)  # no trainer: not augmented
    assert torch.equal(same_labels, labels)
