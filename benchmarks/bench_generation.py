"""Generation + labeling throughput: decode a pool, label it, filter it, for a few teachers.

Uses the real shards (memorization check against 240 images) with untrained decoders and
classifiers written into a scratch run directory: throughput does not depend on how good the
weights are, only on how many candidates survive to the final selection (few, here).
"""

from __future__ import annotations

import resource
import shutil
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from pate_lightning import layout
from pate_lightning.pipeline.cli import cli_main
from pate_lightning.io import save_torch
from pate_lightning.classifiers.model import UCStubModel
from pate_lightning.stacked.layers import member_state_dict
from pate_lightning.generators.vae import Decoder, reset_members
from pate_lightning.classifiers.loading import NORMALIZATIONS

REPO = Path(__file__).resolve().parents[1]


def _write_teachers(run_dir: Path, teacher_ids: list[int]) -> None:
    for teacher_id in teacher_ids:
        torch.manual_seed(teacher_id)
        decoder = Decoder(1, 32, (512, 256))
        reset_members(decoder, [torch.Generator().manual_seed(teacher_id)])
        save_torch(layout.vae_dir(run_dir, teacher_id) / "decoder.pth", member_state_dict(decoder, 0))
        save_torch(layout.classifier_dir(run_dir, teacher_id) / "model.pth", UCStubModel().state_dict())


def flops_per_candidate(batch_size: int = 500) -> float:
    """Decode + classify + nearest-neighbour distance to a 240-image shard, per candidate."""
    decoder, classifier = Decoder(1, 32, (512, 256)), UCStubModel().eval()
    reset_members(decoder, [torch.Generator().manual_seed(0)])
    shard = torch.rand(240, 784)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        images = decoder(torch.randn(1, batch_size, 32)).view(batch_size, 1, 28, 28)
        classifier(NORMALIZATIONS["mnist"](images))
        images.flatten(1) @ shard.T  # the distance expansion's matmul
    return float(counter.get_total_flops()) / batch_size


def bench_generation(data_dir: str, accelerator: str, matmul_gflops: float, teachers: int = 2, pool_size: int = 20000) -> dict:
    work = Path(tempfile.mkdtemp(prefix="pate-bench-gen-"))
    teacher_ids = list(range(teachers))
    try:
        # shards and metadata come from the ordinary training data module
        cli_main([
            "fit", "--config", str(REPO / "configs/teacher_vae.yaml"), f"--data.data_dir={data_dir}",
            f"--data.run_dir={work}", f"--data.teacher_ids={teacher_ids}", "--trainer.max_epochs=1",
            "--trainer.limit_train_batches=1", "--trainer.enable_progress_bar=false",
            "--trainer.enable_checkpointing=false", f"--trainer.accelerator={accelerator}",
        ])
        _write_teachers(work, teacher_ids)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.perf_counter()
        cli_main([
            "predict", "--config", str(REPO / "configs/generate.yaml"), f"--data.data_dir={data_dir}",
            f"--data.run_dir={work}", f"--data.teacher_ids={teacher_ids}", f"--data.pool_size={pool_size}",
            "--trainer.enable_progress_bar=false", f"--trainer.accelerator={accelerator}",
        ])
        seconds = time.perf_counter() - start
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rate = teachers * pool_size / seconds
    gflops = rate * flops_per_candidate() / 1e9
    return {
        "teachers": teachers, "pool_size": pool_size, "seconds": seconds, "candidates_per_s": rate,
        "gflops": gflops, "fraction_of_matmul": gflops / matmul_gflops,
        "peak_rss_mib": rss_after / 1024, "peak_rss_growth_mib": (rss_after - rss_before) / 1024,
    }
