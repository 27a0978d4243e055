"""DP-SGD for stacked teachers: per-sample clipping, stack independence, the report, the refusals."""

import json

import pytest
import torch
from lightning.pytorch import Trainer
from torch import nn

from pate_lightning.generators.kl_annealing import KLAnnealing
from pate_lightning.pipeline.cli import cli_main
from pate_lightning.generators.export import VAEExport
from pate_lightning.data.datamodule import ShardDataModule
from pate_lightning.data.poisson import PoissonShardDataModule, poisson_batch
from pate_lightning.generators.dp.module import DPTeacherVAEModule
from pate_lightning.generators.dp.per_sample import Recorder, clip_factors, clipped_gradients
from pate_lightning.stacked.layers import member_state_dict
from pate_lightning.privacy.analysis import DEFAULT_ORDERS
from pate_lightning.privacy.dp_sgd_accounting import dp_sgd_epsilon
from tests.conftest import REPO
from tests.helpers import torch_calls, write_fake_mnist

SMALL = dict(latent_dim=4, hidden_dims=(16,), seed=7)


def dp_model(teacher_ids, **settings):
    return DPTeacherVAEModule(teacher_ids=teacher_ids, **SMALL, **{"noise_multiplier": 1.0, **settings})


def poisson_data(tmp_path, teacher_ids, sampling_seed=3, **kwargs):
    data_dir = write_fake_mnist(tmp_path / "data", train=120)
    return PoissonShardDataModule(
        data_dir=str(data_dir), run_dir=str(tmp_path / "run"), num_teachers=4, teacher_ids=teacher_ids,
        batch_size=8, seed=7, sampling_seed=sampling_seed, **kwargs,
    )


def fit(tmp_path, model, datamodule, epochs=2, callbacks=()):
    trainer = Trainer(
        max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path, callbacks=[KLAnnealing(1), *callbacks],
    )
    trainer.fit(model, datamodule=datamodule)
    return model


@pytest.mark.parametrize("trainable", [("all",), ("decoder_biases_last",), ("decoder.out.weight", "encoder.mu.bias")])
def test_clipping_equals_naive_per_example_loop(trainable):
    torch.manual_seed(0)
    model = dp_model([0, 1, 2], trainable=trainable)
    x = torch.rand(3, 6, 784)
    eps = torch.randn(3, 6, 4)
    mask = torch.tensor([[1, 1, 1, 1, 1, 0], [1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=torch.float)

    images = x.view(3, 6, 1, 28, 28)

    def stacked(clip):
        model._draw_noise = lambda shape: eps
        with Recorder(model.dp_layers):
            recon, kl = model.per_sample_losses(images, None)
            per_sample = recon + 0.5 * kl
        return clipped_gradients(model.dp_layers, (per_sample * mask).sum(), mask, clip)

    _, norms = stacked(1.0)
    clip = float(norms[mask.bool()].median())  # some samples clipped, some not
    fast, norms = stacked(clip)

    params = model.trainable_parameters()
    naive = [torch.zeros_like(p) for p in params]
    for k in range(3):
        for b in range(6):
            if not mask[k, b]:
                continue
            model._draw_noise = lambda shape: eps[:, b : b + 1]
            recon, kl = model.per_sample_losses(images[:, b : b + 1], None)
            grads = torch.autograd.grad((recon + 0.5 * kl)[k, 0], params)
            member = [g[k] for g in grads]  # teacher k's slice: other teachers' slices are 0
            norm = torch.sqrt(sum(g.pow(2).sum() for g in member))
            assert norm == pytest.approx(float(norms[k, b]), rel=1e-5)
            factor = min(1.0, clip / (float(norm) + 1e-6))
            for total, g in zip(naive, member):
                total[k] += factor * g
    for f, n in zip(fast, naive):
        torch.testing.assert_close(f, n, rtol=1e-5, atol=1e-5)


def test_trainable_subset_freezes_the_rest():
    model = dp_model([0, 1], trainable=("decoder_last",))
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {"decoder.out.weight", "decoder.out.bias"}
    with pytest.raises(ValueError, match="matches no parameter"):
        dp_model([0], trainable=("decoder.nothing*",))


def test_clip_factor_and_poisson_batch():
    assert torch.allclose(clip_factors(torch.tensor([100.0, 0.0]), 2.0), torch.tensor([0.2, 1.0]))
    uniforms = torch.rand(4, 240, generator=torch.Generator().manual_seed(0))
    index, mask = poisson_batch(uniforms, 32 / 240)
    counts = mask.sum(1)
    assert index.shape[1] == counts.max() and 10 < counts.float().mean() < 60  # variable sizes around 32
    for k in range(4):  # exactly the records drawn below the rate, in shard order, each once
        assert index[k, : counts[k]].tolist() == (uniforms[k] < 32 / 240).nonzero().squeeze(1).tolist()


@pytest.mark.parametrize("sampling_seed", [None, 3])
def test_poisson_loader_draws_for_all_teachers_in_one_call_per_step(tmp_path, sampling_seed):
    def loader(teacher_ids):
        datamodule = poisson_data(tmp_path / str(len(teacher_ids)), teacher_ids, sampling_seed, augment=True)
        datamodule.setup("fit")
        return datamodule.train_dataloader()

    def two_steps(loader):
        steps = iter(loader)
        return next(steps), next(steps)

    # membership and augmentation: as many torch calls for four teachers as for one
    assert torch_calls(two_steps, loader([0, 1, 2, 3])) == torch_calls(two_steps, loader([1]))
    if sampling_seed is None:  # private: one generator keyed from OS entropy draws the whole stack's membership
        assert loader([0, 1, 2, 3]).state_dict().keys() == {"augment"}  # and no checkpoint can replay it
        return
    for stacked, alone in zip(two_steps(loader([0, 1, 2, 3])), two_steps(loader([1]))):
        count = int(alone[3][0].sum())  # teacher 1's records, whatever the stack pads them to
        assert count == int(stacked[3][1].sum())
        assert torch.equal(stacked[0][1, :count], alone[0][0, :count]) and torch.equal(stacked[2][1, :count], alone[2][0, :count])


def test_teacher_in_a_dp_stack_equals_itself_alone(tmp_path):
    stacked = fit(tmp_path / "a", dp_model([0, 1, 2], noise_seed=5), poisson_data(tmp_path / "a", [0, 1, 2]))
    alone = fit(tmp_path / "b", dp_model([1], noise_seed=5), poisson_data(tmp_path / "b", [1]))
    initial = member_state_dict(dp_model([1], noise_seed=5).decoder, 0)
    trained = member_state_dict(alone.decoder, 0)
    assert any(not torch.equal(initial[n], trained[n]) for n in trained)  # it did train
    for name, tensor in member_state_dict(stacked.decoder, 1).items():
        torch.testing.assert_close(tensor, trained[name], rtol=0, atol=1e-6)
    # without a noise seed the noise comes from OS entropy: two runs differ
    a = fit(tmp_path / "c", dp_model([1]), poisson_data(tmp_path / "c", [1]))
    b = fit(tmp_path / "d", dp_model([1]), poisson_data(tmp_path / "d", [1]))
    assert not torch.equal(a.decoder.out.weight, b.decoder.out.weight)


def test_training_report_records_dp_settings_and_privacy_entry(tmp_path):
    model = dp_model([0, 1], noise_multiplier=None, target_epsilon=20.0, max_grad_norm=2.0, delta=1e-4)
    fit(tmp_path, model, poisson_data(tmp_path, [0, 1], sampling_seed=None), callbacks=[VAEExport(tmp_path / "run", tensorboard=False)])
    report = json.loads((tmp_path / "run/teacher_vaes/teacher_1/training_report.json").read_text())
    dp = report["dp_sgd"]
    assert dp["steps"] == 2 * 4 and dp["sample_rate"] == pytest.approx(8 / 30) and dp["max_grad_norm"] == 2.0
    eps, _ = dp_sgd_epsilon(dp["noise_multiplier"], dp["sample_rate"], dp["steps"], 1e-4)
    assert dp["epsilon"]["value"] == pytest.approx(eps) and 19.0 < eps <= 20.0  # solved for the target
    assert dp["epsilon"]["delta"] == 1e-4 and dp["epsilon"]["conversion"] == "balle2020"
    assert dp["private"] is True and "OS entropy" in dp["randomness"]  # neither noise nor sampling seeded
    entry = report["privacy"]
    assert entry["dp"] is True and entry["reads_private_data"] is True and entry["stage"] == "generator"
    assert entry["rdp"]["orders"] == list(DEFAULT_ORDERS) and len(entry["rdp"]["values"]) == len(DEFAULT_ORDERS)
    assert entry["seeded"] is False


def test_a_seeded_dp_generator_marks_its_privacy_entry_seeded(tmp_path):
    model = dp_model([0], noise_seed=5)
    fit(tmp_path, model, poisson_data(tmp_path, [0]), callbacks=[VAEExport(tmp_path / "run", tensorboard=False)])
    report = json.loads((tmp_path / "run/teacher_vaes/teacher_0/training_report.json").read_text())
    assert report["dp_sgd"]["private"] is False
    assert report["privacy"]["seeded"] is True and "NOT PRIVATE" in report["privacy"]["note"]  # the ledger sees it


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(noise_multiplier=0.0), "noise_multiplier must be a finite number > 0"),
        (dict(noise_multiplier=-1.0), "noise_multiplier must be a finite number > 0"),
        (dict(max_grad_norm=0.0), "max_grad_norm must be a finite number > 0"),
        (dict(noise_multiplier=None), "exactly one of noise_multiplier"),
        (dict(target_epsilon=3.0), "exactly one of noise_multiplier"),
        (dict(delta=1.5), "delta must lie in"),
    ],
)
def test_bad_dp_settings_are_one_paragraph_errors(settings, message):
    with pytest.raises(ValueError, match=message) as error:
        dp_model([0], **settings)
    assert "\n" not in str(error.value)


def test_unreachable_target_epsilon(tmp_path):
    model = dp_model([0], noise_multiplier=None, target_epsilon=0.001)
    with pytest.raises(ValueError, match="unreachable") as error:
        fit(tmp_path, model, poisson_data(tmp_path, [0]))
    assert "\n" not in str(error.value)


def test_refuses_non_poisson_sampling(tmp_path):
    data_dir = write_fake_mnist(tmp_path / "data", train=120)
    shuffled = ShardDataModule(data_dir=str(data_dir), run_dir=str(tmp_path / "run"), num_teachers=4, teacher_ids=[0], batch_size=8)
    with pytest.raises(ValueError, match="needs Poisson sampling") as error:
        fit(tmp_path, dp_model([0], noise_seed=1), shuffled)
    assert "\n" not in str(error.value)


def test_refuses_batchnorm(tmp_path):
    model = dp_model([0], noise_seed=1)
    model.encoder.norm = nn.BatchNorm1d(16)
    with pytest.raises(ValueError, match="BatchNorm1d, whose batch statistics mix the records") as error:
        fit(tmp_path, model, poisson_data(tmp_path, [0]))
    assert "\n" not in str(error.value)


def dp_cli_fit(tmp_path, run, *extra):
    data_dir = write_fake_mnist(tmp_path / "data", train=120)
    cli_main([
        "fit", "--config", str(REPO / "configs/teacher_vae_dp.yaml"), f"--data.data_dir={data_dir}",
        f"--data.run_dir={tmp_path / run}", "--data.num_teachers=4", "--data.teacher_ids=[0,1]",
        "--data.batch_size=8", "--data.sampling_seed=3", "--model.latent_dim=4", "--model.hidden_dims=[16]",
        "--model.noise_seed=5", "--trainer.max_epochs=4", "--trainer.accelerator=cpu",
        "--trainer.enable_progress_bar=false", "--checkpoint_every_n_epochs=1", *extra,
    ])
    return tmp_path / run


def test_cli_dp_run_resumes_with_the_same_noise_and_step_count(tmp_path):
    straight = dp_cli_fit(tmp_path, "straight")
    with pytest.raises(RuntimeError, match="simulated interruption"):
        dp_cli_fit(tmp_path, "resumed", "--trainer.callbacks+=tests.test_resume.CrashAtEpoch", "--trainer.callbacks.init_args.epoch=2")
    dp_cli_fit(tmp_path, "resumed")
    for teacher_id in (0, 1):
        folder = f"teacher_vaes/teacher_{teacher_id}"
        reports = [json.loads((run / folder / "training_report.json").read_text()) for run in (straight, tmp_path / "resumed")]
        assert reports[0]["dp_sgd"]["steps"] == reports[1]["dp_sgd"]["steps"] == 4 * 4  # the accountant's count survives
        assert reports[1]["dp_sgd"]["epsilon"] == reports[0]["dp_sgd"]["epsilon"]
        assert reports[0]["dp_sgd"]["private"] is False and "NOT PRIVATE" in reports[0]["privacy"]["note"]
        weights = [torch.load(run / folder / "decoder.pth", weights_only=True) for run in (straight, tmp_path / "resumed")]
        for name in weights[0]:
            torch.testing.assert_close(weights[1][name], weights[0][name], rtol=1e-5, atol=1e-6)


def test_cli_bad_dp_setting_is_an_error_exit(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        dp_cli_fit(tmp_path, "run", "--model.max_grad_norm=0")
    assert exited.value.code == 2
    # jsonargparse lists the paragraph among the model Union's errors (as for every module's __init__ check)
    lines = capsys.readouterr().err.splitlines()
    assert any("DP-SGD max_grad_norm must be a finite number > 0, got 0.0: with no noise" in line for line in lines)
    assert not (tmp_path / "run" / "teacher_vaes").exists()


def test_unbounded_training_is_refused(tmp_path):
    trainer = Trainer(max_epochs=-1, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False)
    with pytest.raises(ValueError, match="finite number of steps"):
        trainer.fit(dp_model([0], noise_seed=1), datamodule=poisson_data(tmp_path, [0]))


def test_dp_hybrid_starts_from_the_public_vae_and_records_a_dp_generator(tmp_path):
    """DP-SGD fine-tuning of the public conditional VAE (family `hybrid`): every member starts as the
    public VAE, training moves it, and the report's generator entry is DP with its RDP curve."""
    from pate_lightning.generators.module import TeacherVAEModule
    from pate_lightning.io import save_torch

    public = TeacherVAEModule(teacher_ids=[0], **SMALL, conditional=True)
    state = {f"encoder.{k}": v for k, v in member_state_dict(public.encoder, 0).items()}
    state |= {f"decoder.{k}": v for k, v in member_state_dict(public.decoder, 0).items()}
    save_torch(tmp_path / "vae_full.pth", state)
    model = dp_model([0, 1], conditional=True, generator="hybrid", public_vae=str(tmp_path / "vae_full.pth"))
    for k in (0, 1):  # both members are the public VAE before any step
        assert torch.equal(member_state_dict(model.decoder, k)["out.weight"], state["decoder.out.weight"])
    fit(tmp_path, model, poisson_data(tmp_path, [0, 1]), epochs=1, callbacks=[VAEExport(tmp_path / "run", tensorboard=False)])
    assert not torch.equal(member_state_dict(model.decoder, 0)["out.weight"], state["decoder.out.weight"])
    entry = json.loads((tmp_path / "run/teacher_vaes/teacher_0/training_report.json").read_text())["privacy"]
    assert entry["dp"] is True and entry["reads_private_data"] is True and entry["rdp"] is not None
    assert entry["name"] == "hybrid"  # the ledger names the family that paid, not per_teacher
