"""The union DP generator: one CVAE fine-tuned by DP-SGD (opacus) over all shards, its files and its ledger entry."""

import json

import numpy as np
import pytest
import torch

from pate_lightning import layout
from pate_lightning.baselines.generator_student import generator_student_command
from pate_lightning.generators.decoders import decoder_from_states
from pate_lightning.generators.families import prior_entry
from pate_lightning.generators.union_dp import UnionCVAE, UnionDPSettings, train_union_dp
from pate_lightning.generators.union_dp_command import union_dp_generator_command
from pate_lightning.generators.vae import Decoder, Encoder, reset_members
from pate_lightning.io import save_torch
from pate_lightning.pipeline import stage_table
from pate_lightning.pipeline.chain import call_command, command_stage_args, load_config, stage_run_dir
from pate_lightning.pate.student_training import StudentSettings
from pate_lightning.privacy import NOT_PRIVATE
from pate_lightning.privacy.analysis import DEFAULT_ORDERS, rdp_to_dp
from pate_lightning.privacy.dp_sgd_accounting import dp_sgd_epsilon, dp_sgd_privacy_entry
from pate_lightning.privacy.ledger import PrivacyLedger
from pate_lightning.stacked.layers import member_state_dict
from tests.conftest import REPO
from tests.helpers import write_fake_mnist

LATENT, HIDDEN = 3, [16, 8]


def prior_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A conditional MLP VAE as the public_prior stage writes its vae_full.pth: one stacked member's state."""
    encoder, decoder = Encoder(1, LATENT, HIDDEN, 10), Decoder(1, LATENT, HIDDEN, 10)
    reset_members(encoder, [torch.Generator().manual_seed(seed)])
    reset_members(decoder, [torch.Generator().manual_seed(seed + 1)])
    return {**{f"encoder.{n}": t for n, t in member_state_dict(encoder, 0).items()},
            **{f"decoder.{n}": t for n, t in member_state_dict(decoder, 0).items()}}


def records(count: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(count, 1, 28, 28, generator=generator), torch.randint(0, 10, (count,), generator=generator)


def weights(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_the_plain_model_is_the_stacked_prior_member():
    state = prior_state()
    model = UnionCVAE.from_vae_full(state)
    stacked = decoder_from_states([{k.partition(".")[2]: v for k, v in state.items() if k.startswith("decoder.")}])
    z, labels = torch.randn(5, LATENT), torch.arange(5)
    # the same decoder, unstacked: opacus gets plain nn.Linear layers, the readers get the files they know
    assert torch.allclose(model.decoder(z, labels)[0], stacked.logits(z.unsqueeze(0), labels.unsqueeze(0))[0], atol=1e-6)
    with pytest.raises(ValueError, match="conditional MLP VAE"):
        UnionCVAE.from_vae_full({k: v for k, v in state.items() if k != "encoder.conditional_classes"})


@pytest.mark.parametrize("target", [1.0, 8.0])
def test_opacus_epsilon_matches_the_package_accounting_and_opacus_rdp_on_the_ledger_orders(target):
    from opacus.accountants.analysis.rdp import compute_rdp

    images, labels = records(200)
    settings = UnionDPSettings(target_epsilon=target, epochs=1, batch_size=100)
    result = train_union_dp(UnionCVAE.from_vae_full(prior_state()), images, labels, settings,
                            torch.Generator().manual_seed(1), torch.Generator().manual_seed(2),
                            torch.Generator().manual_seed(3))
    assert result.sample_rate == pytest.approx(0.5) and result.steps == 2  # Poisson over the whole union
    assert result.epsilon <= target * 1.001  # opacus calibrated the noise for the target
    package, _ = dp_sgd_epsilon(result.noise_multiplier, result.sample_rate, result.steps, settings.delta)
    assert package == pytest.approx(result.epsilon, rel=0.05)  # only the grids of orders differ
    # on the same (integer) orders, dp-accounting's curve (the ledger's) is opacus's own RDP of the same mechanism
    entry = dp_sgd_privacy_entry(result.noise_multiplier, result.sample_rate, result.steps, "union_dp", "")
    integer = [i for i, order in enumerate(DEFAULT_ORDERS) if float(order).is_integer()]
    opacus_rdp = compute_rdp(q=result.sample_rate, noise_multiplier=result.noise_multiplier, steps=result.steps,
                             orders=[DEFAULT_ORDERS[i] for i in integer])
    assert np.allclose([entry["rdp"]["values"][i] for i in integer], opacus_rdp, rtol=1e-6)


def test_the_noise_and_the_batches_come_from_their_own_generators():
    images, labels = records(100)
    settings = UnionDPSettings(target_epsilon=4.0, epochs=1, batch_size=20)

    def trained(noise_seed: int, sampling_seed: int) -> torch.Tensor:
        result = train_union_dp(UnionCVAE.from_vae_full(prior_state()), images, labels, settings,
                                torch.Generator().manual_seed(noise_seed), torch.Generator().manual_seed(sampling_seed),
                                torch.Generator().manual_seed(0))
        return weights(result.model)

    # the same seeds replicate; the Gaussian noise follows the noise generator, the Poisson batches the sampling
    # one (both keyed from OS entropy in a private run), whatever the latent draws' recorded seed
    assert torch.equal(trained(1, 2), trained(1, 2))
    assert not torch.equal(trained(1, 2), trained(5, 2)) and not torch.equal(trained(1, 2), trained(1, 6))


def test_a_seeded_run_writes_a_public_vae_whose_ledger_entry_is_opacus_epsilon_and_says_not_private(tmp_path, capsys):
    data_dir = write_fake_mnist(tmp_path / "data", train=120, test=40)
    prior = save_torch(tmp_path / "prior/vae_full.pth", prior_state())
    run_dir = tmp_path / "run"
    report = union_dp_generator_command(
        run_dir=str(run_dir), data_dir=str(data_dir), num_teachers=4, public_vae=str(prior),
        dp=UnionDPSettings(target_epsilon=2.0, epochs=1, batch_size=60), accelerator="cpu", seed=3)
    assert report["records"] == 120 and report["dp_sgd"]["steps"] == 2  # all four shards, rate 60/120
    assert NOT_PRIVATE in capsys.readouterr().out
    assert report["dp_sgd"]["private"] is False and report["privacy"]["seeded"] is True
    out = layout.union_generator_dir(run_dir)
    vae_full = layout.vae_full_file(out, 0)
    # the files every generator reader takes: a conditional MLP decoder.pth and a vae_full.pth
    decoder_from_states([torch.load(layout.decoder_file(out, 0), weights_only=True)])
    UnionCVAE.from_vae_full(torch.load(vae_full, weights_only=True))
    # the public family's teachers carry this record as their prior's; the ledger sums it with the votes
    inherited = prior_entry(vae_full)
    assert inherited["dp"] is True and inherited["reads_private_data"] is True and inherited["seeded"] is True
    ledger = PrivacyLedger()
    ledger.add_contract([inherited])
    alone = ledger.get_epsilon(1e-5)["epsilon"]
    assert alone == pytest.approx(report["dp_sgd"]["epsilon_opacus"], rel=0.05)
    assert alone == pytest.approx(report["dp_sgd"]["epsilon_package_accounting"], rel=1e-9)
    votes = np.full(len(DEFAULT_ORDERS), 0.01) * np.asarray(DEFAULT_ORDERS)
    ledger.step(stage="pate", name="votes", rdp=votes)
    expected, _ = rdp_to_dp(DEFAULT_ORDERS, np.asarray(ledger.entries[0].rdp) + votes, 1e-5, "balle2020")
    assert ledger.get_epsilon(1e-5)["epsilon"] == pytest.approx(expected) and ledger.seeded_by == ["public_prior:union_dp"]
    # a second call keeps the finished generator (the report is the done-marker)
    stamp = vae_full.stat().st_mtime_ns
    assert union_dp_generator_command(run_dir=str(run_dir), data_dir=str(data_dir), num_teachers=4,
                                      public_vae=str(prior), accelerator="cpu", seed=3) == {}
    assert vae_full.stat().st_mtime_ns == stamp
    saved = json.loads(layout.vae_report_file(out, 0).read_text())
    assert "loss" not in json.dumps(saved["dp_sgd"])  # nothing computed from the records without noise


def test_the_generator_student_reports_the_generators_epsilon_end_to_end_and_no_label_epsilon(tmp_path, capsys):
    data_dir = write_fake_mnist(tmp_path / "data", train=120, test=40)
    prior = save_torch(tmp_path / "prior/vae_full.pth", prior_state())
    run_dir = tmp_path / "run"
    union_dp_generator_command(run_dir=str(run_dir), data_dir=str(data_dir), num_teachers=4, public_vae=str(prior),
                               dp=UnionDPSettings(target_epsilon=3.0, epochs=1, batch_size=60), accelerator="cpu", seed=3)
    generated = json.loads(layout.vae_report_file(layout.union_generator_dir(run_dir), 0).read_text())
    run = generator_student_command(run_dir=str(run_dir), data_dir=str(data_dir), per_class=2, accelerator="cpu",
                                    student=StudentSettings(architecture="small_cnn", epochs=1, val_fraction=0.0),
                                    seed=0)
    saved = json.loads(layout.generator_student_report_file(run_dir).read_text())["runs"][0]
    privacy = saved["privacy"]
    # the generator's DP-SGD is the only stage that read private data: its epsilon is the route's, end to end
    assert privacy["privacy_scope"] == "end_to_end" and privacy["epsilon_labels"] is None
    assert privacy["epsilon_end_to_end"] == pytest.approx(generated["dp_sgd"]["epsilon_package_accounting"], rel=1e-9)
    # its noise was seeded, so the student's report and output say NOT PRIVATE
    assert privacy["private"] is False and privacy["seeded_by"] == ["public_prior:union_dp"]
    assert NOT_PRIVATE in capsys.readouterr().out
    assert 0 <= run["student"]["test_accuracy"] <= 1 and saved["student"]["test_images"] == 20


def test_the_route_b_config_runs_its_two_commands_through_the_pipelines_settings(tmp_path):
    config = load_config(REPO / "configs/routes/union_dp_generator_eps1.yaml")
    data_dir = write_fake_mnist(tmp_path / "data", train=120, test=40)
    prior = save_torch(tmp_path / "prior/vae_full.pth", prior_state())
    config.update(run_dir=str(tmp_path / "run"), data_dir=str(data_dir), num_teachers=4, accelerator="cpu")
    config["union_dp_generator"].update(public_vae=str(prior), seed=0)
    config["union_dp_generator"]["dp"].update(epochs=1, batch_size=60)
    config["generator_student"].update(per_class=2, seed=0)
    config["generator_student"]["student"].update(epochs=1)
    for name in ("union_dp_generator", "generator_student"):
        stage = stage_table.get(name)
        call_command(stage.load_target(), command_stage_args(stage, config, stage.load_target()))
    run = json.loads(layout.generator_student_report_file(tmp_path / "run").read_text())["runs"][0]
    # the YAML's settings reached the commands: opacus calibrated for the route's epsilon 1
    assert run["privacy"]["epsilon_end_to_end"] <= 1.0 * 1.01 and run["privacy"]["privacy_scope"] == "end_to_end"


def test_route_a_asks_the_queries_its_data_independent_budget_rule_allows():
    from experiments.dp_route_budget import end_to_end_epsilon, max_queries
    from pate_lightning.privacy.dp_sgd_accounting import dp_sgd_rdp, solve_noise_multiplier

    config = load_config(REPO / "configs/routes/union_dp_pate_eps10.yaml")
    dp = config["union_dp_generator"]["dp"]
    assert dp["target_epsilon"] == 10.0 / 2  # the generator's half of the end-to-end target
    records = 60000  # the union of the 250 shards
    rate, steps = dp["batch_size"] / records, dp["epochs"] * records // dp["batch_size"]
    generator_rdp = dp_sgd_rdp(solve_noise_multiplier(dp["target_epsilon"], dp["delta"], rate, steps), rate, steps)
    # settings only, no vote: the largest multiple of 50 queries under 9.95, a priori
    assert config["pate"]["num_queries"] == max_queries(generator_rdp, 9.95)
    assert end_to_end_epsilon(generator_rdp, config["pate"]["num_queries"]) <= 9.95
    # every teacher's generator is the one the union stage writes
    union = layout.vae_full_file(layout.union_generator_dir(stage_run_dir(stage_table.get("union_dp_generator"), config)), 0)
    assert config["teacher_vae"]["model"]["init_args"]["public_vae"] == str(union)
