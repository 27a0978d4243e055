"""The DP-SGD student baseline: opacus's epsilon agrees with the package's own DP-SGD accounting."""

import json

import pytest
import torch

from pate_lightning.baselines.dp_sgd_command import dp_sgd_student_command
from pate_lightning.baselines.dp_sgd_student import DPSGDSettings, train_dp_sgd
from pate_lightning.privacy import NOT_PRIVATE
from pate_lightning.privacy.dp_sgd_accounting import dp_sgd_epsilon
from tests.helpers import write_fake_mnist


@pytest.mark.parametrize("target", [1.0, 8.0])
def test_opacus_epsilon_matches_the_package_accounting(target):
    generator = torch.Generator().manual_seed(0)
    images, labels = torch.rand(300, 1, 28, 28, generator=generator), torch.randint(0, 10, (300,), generator=generator)
    settings = DPSGDSettings(target_epsilon=target, epochs=2, batch_size=30)
    result = train_dp_sgd(images, labels, settings, torch.Generator().manual_seed(1), 0, torch.device("cpu"),
                          torch.Generator().manual_seed(2))
    assert result.sample_rate == pytest.approx(0.1) and result.steps == 20
    assert result.epsilon <= target * 1.001  # opacus calibrated the noise for the target
    package, _ = dp_sgd_epsilon(result.noise_multiplier, result.sample_rate, result.steps, settings.delta)
    # the same RDP of the subsampled Gaussian and the same conversion; only the grids of orders differ
    assert package == pytest.approx(result.epsilon, rel=0.05)


def test_the_poisson_batches_come_from_the_sampling_generator_not_the_init_seed():
    generator = torch.Generator().manual_seed(0)
    images, labels = torch.rand(200, 1, 28, 28, generator=generator), torch.randint(0, 10, (200,), generator=generator)
    settings = DPSGDSettings(target_epsilon=8.0, epochs=1, batch_size=20)

    def weights(sampling_seed: int) -> torch.Tensor:
        # the same initial weights (init seed 0) and the same Gaussian noise: only the batches' generator differs
        result = train_dp_sgd(images, labels, settings, torch.Generator().manual_seed(1), 0, torch.device("cpu"),
                              torch.Generator().manual_seed(sampling_seed))
        return torch.cat([p.detach().flatten() for p in result.model.parameters()])

    # the batches, and so the model, follow the sampling generator (keyed from OS entropy in a private run);
    # the init seed alone, which a run may record, does not fix them
    assert torch.equal(weights(5), weights(5)) and not torch.equal(weights(5), weights(6))


def test_a_seeded_run_says_not_private_and_records_its_scope(tmp_path, capsys):
    data_dir = write_fake_mnist(tmp_path / "data", train=120, test=40)
    run = dp_sgd_student_command(run_dir=str(tmp_path / "run"), data_dir=str(data_dir), num_teachers=4,
                                 teacher_ids=[0, 1], dp_sgd=DPSGDSettings(target_epsilon=2.0, epochs=1, batch_size=10),
                                 accelerator="cpu", seed=3)
    report = json.loads((tmp_path / "run/dp_sgd_student/report.json").read_text())["runs"][0]
    assert report["records"] == 60  # two of four shards of 120 images
    privacy = report["privacy"]
    assert privacy["private"] is False and "NOT private" in privacy["noise_seed_note"]
    assert NOT_PRIVATE in capsys.readouterr().out
    assert privacy["privacy_scope"] == "end_to_end" and privacy["epsilon_labels"] is None
    assert privacy["epsilon_end_to_end"] <= 2.0 * 1.001 and privacy["delta"] == 1e-5
    assert privacy["conversion"] == "balle2020"
    assert privacy["ledger"][0]["dp"] is True and run["student"]["test_images"] == 20
