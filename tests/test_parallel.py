import subprocess
import sys

import torch

from pate_lightning.pipeline.teacher_parallel import Placement
from tests.conftest import REPO
from tests.helpers import write_fake_mnist


def fit(run_dir, data_dir, devices, ensemble_size, *extra, timeout=300):
    cmd = [
        sys.executable, "-m", "pate_lightning", "fit", "--config", str(REPO / "configs/teacher_vae.yaml"),
        f"--data.data_dir={data_dir}", f"--data.run_dir={run_dir}", "--data.num_teachers=4",
        "--trainer.max_epochs=1", "--trainer.accelerator=cpu", f"--trainer.devices={devices}",
        "--trainer.enable_progress_bar=false", "--trainer.enable_checkpointing=false",
        "--model.hidden_dims=[32]", "--model.latent_dim=4", f"--ensemble_size={ensemble_size}", *extra,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_placement_shares_are_disjoint_and_cover():
    teachers = list(range(11))
    shares = [Placement(global_rank=r, world_size=3).share(teachers) for r in range(3)]
    assert sorted(t for s in shares for t in s) == teachers


def test_two_processes_give_the_same_teachers_as_one(tmp_path):
    data_dir = write_fake_mnist(tmp_path / "data", train=120)
    fit(tmp_path / "one", data_dir, devices=1, ensemble_size=4)
    done = fit(tmp_path / "two", data_dir, devices=2, ensemble_size=1)
    assert "rank 1" in done.stderr + done.stdout  # the work really was split over two processes
    for teacher_id in range(4):
        one = torch.load(tmp_path / f"one/teacher_vaes/teacher_{teacher_id}/decoder.pth", weights_only=True)
        two = torch.load(tmp_path / f"two/teacher_vaes/teacher_{teacher_id}/decoder.pth", weights_only=True)
        for name in one:
            # weights stay each teacher's own: an all-reduce would pull teachers together
            assert torch.allclose(one[name], two[name], rtol=1e-4, atol=1e-6), (teacher_id, name)
    summary = (tmp_path / "two/run_summary.json").read_text()
    assert '"processes": 2' in summary and '"teachers_missing": []' in summary


def test_ranks_with_fewer_groups_or_none_do_not_hang(tmp_path):
    """Rank 0 trains teachers 0 and 2, rank 1 only teacher 1: each Trainer.fit opened a collective (Lightning's
    prepare_data barrier) that rank 1, already done, never joined. Then one teacher on two processes: rank 1 idle."""
    data_dir = write_fake_mnist(tmp_path / "data", train=120)
    fit(tmp_path / "three", data_dir, 2, 1, "--data.num_teachers=3", timeout=150)
    assert all((tmp_path / f"three/teacher_vaes/teacher_{t}/decoder.pth").is_file() for t in range(3))
    fit(tmp_path / "one", data_dir, 2, 1, "--data.teacher_ids=[0]", timeout=150)
    assert (tmp_path / "one/teacher_vaes/teacher_0/decoder.pth").is_file()
    assert not (tmp_path / "one/teacher_vaes/teacher_1").exists()


def test_pipeline_on_two_processes_runs_the_other_stages_once(tmp_path):
    """Both processes ran evaluate, combine and pate: two noisy releases of the same votes, one accounted for."""
    import yaml

    from tests.test_pipeline import tiny_config

    path, config = tiny_config(tmp_path)
    config["devices"] = 2
    path.write_text(yaml.safe_dump(config))
    cmd = [sys.executable, "-m", "pate_lightning", "pipeline", "--config", str(path), "--summary", "false"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert "teacher_classifier rank 1" in out  # the teachers really were split over two processes
    for stage in ("evaluate", "combine", "pate"):
        assert out.count(f"] {stage}: running") == 1, stage
    assert out.count("all stages done") == 1
    assert (tmp_path / "run/pate/report.json").is_file()
