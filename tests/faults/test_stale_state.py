"""Fault suite, state that must not go stale or mislead a privacy figure: a "public" prior trained on
private data, metadata left by an interrupted combine, a DP-SGD resume with other noise, one teacher
voting twice, overwrite markers, two pipelines in one folder, non-finite settings and damaged caches."""

from __future__ import annotations

import json

import pytest
import torch

from pate_lightning import layout
from pate_lightning.errors import PateError
from pate_lightning.generators.decoders import build_vae
from pate_lightning.generators.families import generator_entry
from pate_lightning.generators.vae import reset_members
from pate_lightning.io import save_torch, sha256_file, write_json
from pate_lightning.pipeline import stage_table
from pate_lightning.pipeline.chain import lightning_stage_config
from pate_lightning.privacy.scope import decide_scope
from pate_lightning.stacked.layers import member_state_dict
from tests.conftest import REPO
from tests.faults.common import fails_clearly, run, snapshot
from tests.synthetic_helpers import make_run


def write_prior(folder, dataset: str):
    """A tiny conditional VAE as a public prior, with the privacy record its fit would write for ``dataset``."""
    encoder, decoder = build_vae("mlp", 1, 4, (16,), 10)
    reset_members(encoder, [torch.Generator().manual_seed(0)])
    reset_members(decoder, [torch.Generator().manual_seed(1)])
    state = {f"encoder.{k}": v for k, v in member_state_dict(encoder, 0).items()}
    state |= {f"decoder.{k}": v for k, v in member_state_dict(decoder, 0).items()}
    vae = save_torch(folder / "vae_full.pth", state)
    write_json(folder / "training_report.json", {"privacy": generator_entry("per_teacher", dataset)})
    return vae


def public_family_stages(tmp_path, capsys, prior_dataset: str) -> list[dict]:
    from pate_lightning.candidates.combine import stage_entries

    data_dir, run_dir = make_run(tmp_path, teachers=())
    vae = write_prior(tmp_path / "prior", prior_dataset)
    code, stderr = run(capsys, "fit", "--config", REPO / "configs/generators/public.yaml", f"--data.data_dir={data_dir}",
                       f"--data.run_dir={run_dir}", "--data.num_teachers=4", "--data.teacher_ids=[0]",
                       f"--model.public_vae={vae}", "--model.latent_dim=4", "--model.hidden_dims=[16]",
                       "--trainer.accelerator=cpu", "--trainer.enable_progress_bar=false")
    assert code == 0, stderr
    return stage_entries(layout.vae_report_file(run_dir, 0), "generator")


def test_public_family_carries_a_private_priors_record(tmp_path, capsys):  # 1
    stages = public_family_stages(tmp_path, capsys, "mnist")
    assert [(s["stage"], s["reads_private_data"]) for s in stages] == [("generator", False), ("public_prior", True)]
    scope, note = decide_scope("synthetic", stages)
    assert scope == "labels_only_queries_not_private" and "public_prior:per_teacher" in note


def test_public_family_on_a_font_prior_stays_end_to_end(tmp_path, capsys):  # 1, the good case
    stages = public_family_stages(tmp_path, capsys, "font_digits")
    assert stages[1]["stage"] == "public_prior" and stages[1]["reads_private_data"] is False
    assert decide_scope("synthetic", stages)[0] == "end_to_end"


def test_pipeline_public_prior_on_private_data_needs_consent():  # 1
    config = {"run_dir": "runs/x", "data_dir": "d", "public_prior": {"data": {"init_args": {"dataset": "mnist"}}}}
    with pytest.raises(PateError, match=r"stage public_prior: dataset 'mnist' is not public.*allow_private_prior: true"):
        lightning_stage_config(stage_table.get("public_prior"), config, REPO / "configs")
    config["public_prior"]["allow_private_prior"] = True
    merged = lightning_stage_config(stage_table.get("public_prior"), config, REPO / "configs")
    assert merged["data"]["init_args"]["dataset"] == "mnist" and "allow_private_prior" not in merged


def test_interrupted_combine_leaves_no_stale_metadata(tmp_path, monkeypatch):  # 2
    from pate_lightning.candidates import combine
    from tests.test_combine import write_dataset

    run_dir = tmp_path / "run"
    write_dataset(run_dir, 0, [0] * 6 + [1] * 4)
    combine.combine_command(run_dir=str(run_dir))
    metadata = layout.synthetic_dir(run_dir) / "combined_metadata.json"
    assert metadata.is_file()

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # the samples are written, the labels and metadata not yet

    monkeypatch.setattr(combine, "write_csv", killed)
    with pytest.raises(KeyboardInterrupt):
        combine.combine_command(run_dir=str(run_dir), percentage=50)
    assert not metadata.exists()


def test_pate_refuses_metadata_of_other_samples(tmp_path):  # 2
    from pate_lightning.pate.publish import read_privacy_stages
    from tests.pate_helpers import random_images, write_combined

    synthetic = tmp_path / "synthetic"
    stages = [generator_entry("public", "mnist")]
    old = write_combined(synthetic, random_images(6, seed=1))
    write_json(synthetic / "combined_metadata.json",
               {"privacy": {"stages": stages}, "outputs": {"samples": {"sha256": sha256_file(old)}}})
    assert read_privacy_stages(old) == stages
    write_combined(synthetic, random_images(6, seed=2))  # new samples, the old metadata
    with pytest.raises(PateError, match=r"combined_metadata.json: does not describe combined_samples.pt.*Rerun"):
        read_privacy_stages(old)


def test_dp_sgd_resume_with_other_noise_is_refused(tmp_path, capsys):  # 3
    from tests.test_dp_sgd import dp_cli_fit

    with pytest.raises(RuntimeError, match="simulated interruption"):  # target_epsilon 8 solved for 4 epochs
        dp_cli_fit(tmp_path, "run", "--trainer.callbacks+=tests.test_resume.CrashAtEpoch", "--trainer.callbacks.init_args.epoch=2")
    checkpoints = snapshot(tmp_path / "run/checkpoints")
    with pytest.raises(SystemExit) as exited:  # more epochs: sigma re-solved, larger
        dp_cli_fit(tmp_path, "run", "--trainer.max_epochs=8")
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert exited.value.code == 2 and line.startswith("pate-lightning: error: DP-SGD resume refused"), line
    assert "8 steps ran at noise_multiplier" in line and "this run would use" in line
    assert snapshot(tmp_path / "run/checkpoints") == checkpoints and not (tmp_path / "run/teacher_vaes").exists()
    dp_cli_fit(tmp_path, "run")  # the same settings resume
    assert json.loads(layout.vae_report_file(tmp_path / "run", 0).read_text())["dp_sgd"]["steps"] == 16


def pate_args(data_dir, run_dir):
    return ["pate", f"--run_dir={run_dir}", f"--data_dir={data_dir}", "--num_queries=4", "--mechanism=gnmax",
            "--sigma=0.1", "--accelerator=cpu", "--student.epochs=1"]


@pytest.mark.parametrize("how", ["symlink", "copy"])
def test_a_teacher_cannot_vote_twice(tmp_path, capsys, how):  # 4
    import shutil

    from tests.helpers import write_fake_mnist
    from tests.pate_helpers import write_teachers

    data_dir, run_dir = write_fake_mnist(tmp_path / "data", train=20, test=40), tmp_path / "run"
    nets = write_teachers(run_dir / "trained_nets", [0, 1, 2], favourites=[3, 3, 4])
    shutil.rmtree(nets / "1")
    (nets / "1").symlink_to(nets / "0") if how == "symlink" else shutil.copytree(nets / "0", nets / "1")
    fails_clearly(capsys, (str(nets), "teachers 0 and 1 have identical weights", "vote twice"), *pate_args(data_dir, run_dir))
    assert not layout.pate_report_file(run_dir).exists()


@pytest.mark.parametrize("damage", ["float", "negative"])
def test_vote_cache_with_damaged_counts_is_refused(tmp_path, capsys, damage):  # 9
    from tests.helpers import write_fake_mnist
    from tests.pate_helpers import write_teachers

    data_dir, run_dir = write_fake_mnist(tmp_path / "data", train=20, test=40), tmp_path / "run"
    write_teachers(run_dir / "trained_nets", [0, 1], favourites=[3, 3])
    assert run(capsys, *pate_args(data_dir, run_dir))[0] == 0
    cache_file = layout.votes_file(run_dir, "mnist_test")
    cache = torch.load(cache_file, weights_only=True)
    if damage == "float":
        cache["votes"] = cache["votes"].float()
    else:  # rows still sum to the number of teachers
        cache["votes"][0, :2] = torch.tensor([3, -1])
    save_torch(cache_file, cache)
    fails_clearly(capsys, (str(cache_file), "vote cache holds", "Delete it to recount"), *pate_args(data_dir, run_dir))


class FakeStages:
    """Stands in for the stages a pipeline runs: records (stage, overwrite); ``stop_at`` raises as SIGINT would."""

    def __init__(self, monkeypatch, stop_at: str | None = None) -> None:
        from pate_lightning.pipeline import chain

        self.calls: list[tuple[str, bool]] = []
        self.stop_at = stop_at
        monkeypatch.setattr(chain, "run_lightning_stage", lambda stage, settings, run_dir, overwrite: self.ran(stage.name, overwrite))
        monkeypatch.setattr(chain, "call_command", lambda function, settings: self.ran(function.__name__, settings.get("overwrite")))

    def ran(self, name: str, overwrite: object) -> None:
        self.calls.append((name, bool(overwrite)))
        if name == self.stop_at:
            raise KeyboardInterrupt


def test_interrupted_overwrite_resumes_as_an_overwrite(tmp_path, monkeypatch):  # 5
    import yaml

    from pate_lightning.pipeline.chain import Pipeline
    from tests.test_pipeline import tiny_config

    path, config = tiny_config(tmp_path)
    FakeStages(monkeypatch)
    Pipeline(path).run()
    config["generate"]["data"]["init_args"]["pool_size"] = 48  # a changed config: generate must redo every teacher
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(KeyboardInterrupt):
        FakeStages(monkeypatch, stop_at="generate")
        Pipeline(path).run()
    fake = FakeStages(monkeypatch)
    Pipeline(path).run()
    assert fake.calls[0] == ("generate", True)  # old markers are not taken for the new config's


def test_a_copied_run_folder_is_up_to_date(tmp_path, monkeypatch):  # 12
    import shutil

    from pate_lightning.pipeline.chain import Pipeline
    from tests.test_pipeline import tiny_config

    path, _ = tiny_config(tmp_path)
    FakeStages(monkeypatch)
    Pipeline(path).run()
    shutil.copytree(tmp_path / "run", tmp_path / "copy")
    fake = FakeStages(monkeypatch)
    Pipeline(path, run_dir=str(tmp_path / "copy")).run()
    assert fake.calls == []  # nothing reruns, no PATE draw is replaced


def test_runs_recorded_with_the_old_hash_stay_up_to_date(tmp_path, monkeypatch):  # 12, no rerun after an upgrade
    from pate_lightning.io import read_json
    from pate_lightning.pipeline.chain import Pipeline, command_stage_args, lightning_stage_config, stage_hash
    from tests.test_pipeline import tiny_config

    path, _ = tiny_config(tmp_path)
    FakeStages(monkeypatch)
    Pipeline(path).run()
    state_file = layout.pipeline_state_file(tmp_path / "run")
    state, previous = read_json(state_file), ""
    for name in state:  # the hash as it was: run_dir included
        pipeline = Pipeline(path)
        stage = stage_table.get(name)
        settings = (command_stage_args(stage, pipeline.config, stage.load_target()) if stage.kind == "command"
                    else lightning_stage_config(stage, pipeline.config, path.parent))
        state[name]["hash"] = previous = stage_hash(name, settings, previous, keep_location=True)
    write_json(state_file, state)
    fake = FakeStages(monkeypatch)
    Pipeline(path).run()
    assert fake.calls == []


def test_two_pipelines_in_one_folder_do_not_mix(tmp_path, capsys, monkeypatch):  # 6
    import os

    from pate_lightning.io import exclusive_lock
    from tests.test_pipeline import tiny_config

    path, _ = tiny_config(tmp_path)
    run_dir = tmp_path / "run"
    fake = FakeStages(monkeypatch)
    with exclusive_lock(layout.run_lock_file(run_dir), run_dir):  # the other pipeline, still working
        fails_clearly(capsys, (f"{run_dir}: another run (pid {os.getpid()}) is working in this folder", "another run_dir"),
                      "pipeline", "--config", path, "--summary", "false")
    assert fake.calls == [] and not layout.pipeline_state_file(run_dir).exists()
    assert run(capsys, "pipeline", "--config", path, "--summary", "false")[0] == 0  # released: it runs
    assert [name for name, _ in fake.calls][:2] == ["teacher_classifier", "teacher_vae"]


@pytest.mark.parametrize("setting", ["--student.lr=.inf", "--student.unlabeled_weight=.nan", "--sigma=.inf"])
def test_non_finite_pate_settings_are_refused(tmp_path, capsys, setting):  # 8
    line = fails_clearly(capsys, ("settings must be finite numbers", setting.split("=")[0][2:]),
                         *pate_args(tmp_path / "data", tmp_path / "run"), setting)
    assert "=inf" in line or "=nan" in line
    assert not (tmp_path / "run").exists()


def test_non_finite_generate_threshold_is_refused(tmp_path, capsys):  # 8: a NaN distance turned its filter off
    from tests.faults.test_run_faults import generate_args

    fails_clearly(capsys, ("settings must be finite numbers", "min_diversity_distance=nan"),
                  *generate_args(tmp_path / "data", tmp_path / "run", "--trainer.callbacks.init_args.min_diversity_distance=.nan"))


def test_pipeline_command_stage_refuses_non_finite(tmp_path, monkeypatch):  # 8, through the pipeline
    from pate_lightning.candidates.combine import combine_command
    from pate_lightning.pipeline.chain import call_command

    with pytest.raises(ValueError, match=r"percentage=nan"):
        call_command(combine_command, {"run_dir": str(tmp_path), "percentage": float("nan")})


def test_reports_are_never_written_with_nan_tokens(tmp_path):  # 8
    with pytest.raises(PateError, match=r"report.json: not written: .*accuracy=nan"):
        write_json(tmp_path / "report.json", {"runs": [{"accuracy": float("nan")}]})
    assert not (tmp_path / "report.json").exists()


@pytest.mark.parametrize("name", ["report.json", "diagnostics.json"])
def test_damaged_report_is_kept_aside(tmp_path, caplog, name):  # 10
    from pate_lightning.pate.report import write_report

    paths = {"report.json": tmp_path / "report.json", "diagnostics.json": tmp_path / "diagnostics.json"}
    run_entry = {"mechanism": "gnmax", "queries_asked": 4}
    write_report(paths["report.json"], paths["diagnostics.json"], run_entry, dict(run_entry))
    damaged = paths[name].read_bytes()[:40]
    paths[name].write_bytes(damaged)  # truncated
    with caplog.at_level("WARNING"):
        write_report(paths["report.json"], paths["diagnostics.json"], {**run_entry, "queries_asked": 8}, dict(run_entry))
    (aside,) = tmp_path.glob(f"{name}.damaged-*")
    assert aside.read_bytes() == damaged and f"kept as {aside.name}" in caplog.text


def test_tensorboard_runs_do_not_merge_across_overwrites(tmp_path, capsys):  # 11
    from tests.faults.common import vae_args
    from tests.helpers import write_fake_mnist

    data_dir, run_dir = write_fake_mnist(tmp_path / "data", train=40), tmp_path / "run"
    counts = []
    for extra in ((), ("--overwrite=true",), ("--overwrite=true",)):
        assert run(capsys, *vae_args(data_dir, run_dir, *extra))[0] == 0
        counts.append(len(list(layout.logs_dir(run_dir, "teacher_vae", 0).glob("events.out.tfevents.*"))))
    # one run writes its curves and its hparams (two event files); the last run's files only, never merged
    assert counts[0] >= 1 and counts == [counts[0]] * 3, counts


@pytest.mark.parametrize("damage", ["test_split", "zeroed", "planted"])
def test_font_cache_that_differs_from_its_manifest_is_rendered_again(tmp_path, monkeypatch, caplog, damage):  # 9
    from pate_lightning.data import font_digits, sources
    from tests.faults.common import Payload

    monkeypatch.setattr(font_digits, "PER_CLASS", {True: 4, False: 2})
    every_font = font_digits.font_files
    monkeypatch.setattr(font_digits, "font_files", lambda: every_font()[:3])
    sources.prepare("font_digits", tmp_path)
    folder = tmp_path / "FontDigits/processed"
    good = torch.load(folder / "train.pt", weights_only=True)
    marker = tmp_path / "code_ran"
    if damage == "test_split":  # 20 images where the manifest says 40
        (folder / "train.pt").write_bytes((folder / "test.pt").read_bytes())
    elif damage == "zeroed":
        save_torch(folder / "train.pt", {"images": torch.zeros_like(good["images"]), "labels": good["labels"]})
    else:
        torch.save({"images": Payload(marker), "labels": good["labels"]}, folder / "train.pt")
    with caplog.at_level("WARNING"):
        with pytest.raises(PateError, match="pate-lightning prepare --dataset font_digits"):  # never used as it is
            sources.load_split("font_digits", tmp_path, train=True)
        assert sources.prepare("font_digits", tmp_path) == "rendered from fonts"  # what a stage's prepare_data runs
    images, labels = sources.load_split("font_digits", tmp_path, train=True)
    assert torch.equal(images, good["images"]) and torch.equal(labels, good["labels"])  # rendered again, same seed
    assert "train.pt" in caplog.text and "rendered again" in caplog.text and not marker.exists()
    assert "weights_only=False" not in caplog.text


def plant_pickle(path, marker):
    from tests.faults.common import Payload

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"images": Payload(marker)}, path)


def test_planted_samples_are_refused_without_torchs_advice(tmp_path, capsys):  # noisy: planted pickles
    from tests.helpers import write_fake_mnist
    from tests.pate_helpers import write_teachers
    from tests.test_combine import write_dataset

    data_dir, run_dir, marker = write_fake_mnist(tmp_path / "data", train=20, test=40), tmp_path / "run", tmp_path / "ran"
    write_teachers(run_dir / "trained_nets", [0, 1], favourites=[3, 3])
    combined = layout.synthetic_dir(run_dir) / "combined_samples.pt"
    plant_pickle(combined, marker)
    fails_clearly(capsys, (str(combined), "synthetic samples", "refused unread"),
                  *pate_args(data_dir, run_dir), "--query_source=synthetic")
    write_dataset(run_dir, 0, [0] * 4)
    plant_pickle(layout.synthetic_samples_file(run_dir, 0), marker)
    fails_clearly(capsys, (str(layout.synthetic_samples_file(run_dir, 0)), "teacher 0 synthetic samples", "refused unread"),
                  "combine", f"--run_dir={run_dir}")
    assert not marker.exists()


def test_closing_summary_refuses_a_planted_rejected_examples_file(tmp_path):  # noisy
    from pate_lightning.pipeline.run_report import rejected_grid

    plant_pickle(layout.rejected_examples_file(tmp_path, 0), tmp_path / "ran")
    with pytest.raises(PateError, match="teacher 0 rejected examples: holds Python objects"):
        rejected_grid(tmp_path, 0)
    assert not (tmp_path / "ran").exists()


def test_pipeline_state_that_is_not_an_object_is_named(tmp_path, capsys, monkeypatch):  # noisy
    from tests.test_pipeline import tiny_config

    path, _ = tiny_config(tmp_path)
    FakeStages(monkeypatch)
    state_file = layout.pipeline_state_file(tmp_path / "run")
    state_file.parent.mkdir(parents=True)
    state_file.write_text("[]")
    fails_clearly(capsys, (str(state_file), "not a JSON object", "delete it"), "pipeline", "--config", path, "--summary", "false")


def test_lightning_rejects_a_trainer_setting_in_one_line(tmp_path, capsys):  # noisy: devices 0
    from tests.faults.common import vae_args
    from tests.helpers import write_fake_mnist

    data_dir = write_fake_mnist(tmp_path / "data", train=40)
    fails_clearly(capsys, ("devices",), *vae_args(data_dir, tmp_path / "run", "--trainer.devices=0"))


def test_pate_runs_on_other_teachers_are_kept_side_by_side(tmp_path, capsys):  # noisy: a second pate replaced the first
    from tests.helpers import write_fake_mnist
    from tests.pate_helpers import write_teachers

    data_dir, run_dir = write_fake_mnist(tmp_path / "data", train=20, test=40), tmp_path / "run"
    write_teachers(run_dir / "trained_nets", [0, 1, 2, 3], favourites=[3, 3, 3, 4])
    for ids in ("[0,1]", "[2,3]"):
        assert run(capsys, *pate_args(data_dir, run_dir), f"--teacher_ids={ids}")[0] == 0
    runs = json.loads(layout.pate_report_file(run_dir).read_text())["runs"]
    assert [r["teacher_ids"] for r in runs] == [[0, 1], [2, 3]]
