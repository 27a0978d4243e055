"""Fault #13 end to end: a Fashion-MNIST folder holding only the four official ``*.gz`` files, as the
dataset is distributed, runs fit (classifier and VAE), predict and pate for one teacher, offline."""

from __future__ import annotations

import json

from pate_lightning import layout
from tests.conftest import REPO
from tests.faults.common import run, snapshot
from tests.faults.test_data_faults import gz_dataset

CPU = ("--trainer.accelerator=cpu", "--trainer.enable_progress_bar=false")


def test_fashion_mnist_gz_files_run_fit_predict_and_pate(tmp_path, capsys):
    data_dir, run_dir = gz_dataset(tmp_path / "data", "fashion_mnist", train=80, test=40), tmp_path / "run"
    raw = snapshot(data_dir)
    assert sorted(raw) == sorted(f"FashionMNIST/raw/{name}-idx{rank}-ubyte.gz" for name, rank in (
        ("train-images", 3), ("train-labels", 1), ("t10k-images", 3), ("t10k-labels", 1)))
    data = (f"--data.data_dir={data_dir}", f"--data.run_dir={run_dir}", "--data.dataset=fashion_mnist")
    one_teacher = ("--data.num_teachers=1", "--trainer.max_epochs=1")
    steps = [
        ("fit", "--config", REPO / "configs/teacher_classifier.yaml", *data, *one_teacher, *CPU),
        ("fit", "--config", REPO / "configs/teacher_vae.yaml", *data, *one_teacher, "--model.latent_dim=4",
         "--model.hidden_dims=[16]", *CPU),
        ("predict", "--config", REPO / "configs/generate.yaml", *data, "--data.pool_size=60", *CPU,
         "--trainer.callbacks.init_args.confidence_threshold=0.0", "--trainer.callbacks.init_args.min_nn_distance=0",
         "--trainer.callbacks.init_args.min_diversity_distance=0", "--trainer.callbacks.init_args.quota=false"),
        ("pate", f"--run_dir={run_dir}", f"--data_dir={data_dir}", "--dataset=fashion_mnist", "--num_queries=10",
         "--mechanism=gnmax", "--sigma=0.1", "--student.epochs=1", "--student.batch_size=4", "--accelerator=cpu"),
    ]
    for step in steps:
        code, stderr = run(capsys, *step)
        assert code == 0, f"{step[0]}: {stderr[-2000:]}"
    assert (layout.classifier_dir(run_dir, 0) / "model.pth").is_file()
    assert layout.decoder_file(run_dir, 0).is_file()
    selection = json.loads(layout.selection_report_file(run_dir, 0).read_text())
    assert selection["pool_size"] == 60
    report = json.loads(layout.pate_report_file(run_dir).read_text())
    latest = report["runs"][-1]
    assert latest["num_teachers"] == 1 and latest["queries_answered"] == 10
    assert snapshot(data_dir) == raw  # read in place: nothing unpacked, downloaded or rewritten
