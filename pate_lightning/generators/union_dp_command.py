"""``pate-lightning union_dp_generator``: the public prior fine-tuned by DP-SGD over the union of all shards.

Writes ``{run_dir}/union_vae/teacher_vaes/teacher_0/{decoder.pth, vae_full.pth, samples.png, training_report.json}``,
the public prior's layout, so the ``public`` family takes the result as its ``public_vae`` and every later stage
runs unchanged. The report's ``privacy`` entry holds the DP-SGD curve on the package's orders; it travels with
every teacher as ``prior_privacy``, ``combine`` pools it, and the ledger adds it to the votes' curve (the same
records pass through both: sequential composition, the sum). The epsilon is opacus's RDP accountant's; the
package's dp-accounting curve of the same noise, rate and steps is the ledger's and is recorded beside it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional

import torch

from pate_lightning import layout
from pate_lightning.baselines.dp_sgd_command import CONVERSION, union_of_shards
from pate_lightning.errors import PateError
from pate_lightning.generators.union_dp import UnionCVAE, UnionDPSettings, class_conditional_samples, train_union_dp
from pate_lightning.io import load_state_dict, save_torch, sha256_file, write_marker
from pate_lightning.pate.command import vote_device
from pate_lightning.privacy import CONVERSION_REFERENCES, NOT_PRIVATE, noise_source
from pate_lightning.privacy.dp_sgd_accounting import dp_sgd_epsilon, dp_sgd_privacy_entry
from pate_lightning.seeding import Stream, generator, private_generators
from pate_lightning.stacked.export import write_png_grid

log = logging.getLogger(__name__)

FAMILY = "union_dp"
NOTE = ("the public prior fine-tuned by DP-SGD (opacus) over the union of all teachers' shards: Poisson sampling "
        "over the union, per-example clipping, Gaussian noise once per step; composes by sum with the votes")
SAMPLES_PER_CLASS = 8  # samples.png: one row a class


def union_dp_generator_command(
    run_dir: str = ".",
    data_dir: str = "data",
    dataset: str = "mnist",
    num_teachers: int = 250,
    teacher_ids: Optional[list[int]] = None,
    shard_seed: int = 42,
    public_vae: Optional[str] = None,
    dp: UnionDPSettings = UnionDPSettings(),
    generator_seed: int = 42,
    accelerator: str = "auto",
    seed: Optional[int] = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Fine-tune the public prior on the union of the teachers' shards by DP-SGD and write it as a public VAE.

    Args:
        run_dir: the run directory (its shard_indices.json is reused or made from num_teachers and shard_seed).
        data_dir: the prepared MNIST folder.
        dataset: the MNIST-family dataset under data_dir.
        num_teachers: the partition's shard count (the records are the union of the shards).
        teacher_ids: shards whose records are used (default: all, i.e. the whole training set).
        shard_seed: the partition's seed (the classifiers' data seed).
        public_vae: the public prior's ``vae_full.pth`` (a conditional MLP VAE); default the pipeline's
            ``{run_dir}/public_vae/teacher_vaes/teacher_0/vae_full.pth``.
        dp: the DP-SGD settings (target epsilon, delta, epochs, expected batch, clipping, lr, trainable part).
        generator_seed: the VAE's latent draws while training and for samples.png (not privacy noise).
        accelerator: auto, cpu, gpu, cuda or mps.
        seed: null (default): DP-SGD noise and Poisson batches from OS entropy (private). An int seeds them:
            reproducible, and the report says NOT PRIVATE.
        overwrite: train again although the report exists.
    """
    started = time.perf_counter()
    dp.check()
    root = Path(run_dir)
    out = layout.union_generator_dir(root)
    report_file = layout.vae_report_file(out, 0)
    if report_file.is_file() and not overwrite:
        log.info("union_dp_generator: %s exists, skipped (overwrite true trains again)", report_file)
        return {}
    prior_path = Path(public_vae) if public_vae else layout.vae_full_file(layout.public_prior_dir(root), 0)
    try:
        model = UnionCVAE.from_vae_full(load_state_dict(prior_path, "public prior"))
    except ValueError as error:
        raise PateError(f"cannot start the union generator from it ({error}). Train the public prior as a "
                        "conditional MLP VAE (configs/generators/public_prior.yaml).", prior_path) from None
    noise = noise_source(seed)
    sampling = private_generators(seed, [0], Stream.POISSON)[0]  # the Poisson batches: privacy randomness
    images, labels = union_of_shards(root, data_dir, dataset, num_teachers, teacher_ids, shard_seed)
    result = train_union_dp(model, images, labels, dp, noise.votes, sampling,
                            generator(generator_seed, 0, Stream.NOISE), vote_device(accelerator))
    package_epsilon, order = dp_sgd_epsilon(result.noise_multiplier, result.sample_rate, result.steps, dp.delta,
                                            CONVERSION)
    trained = result.model.cpu()
    decoder = {name: tensor.detach().clone() for name, tensor in trained.decoder.state_dict().items()}
    encoder = {name: tensor.detach().clone() for name, tensor in trained.encoder.state_dict().items()}
    save_torch(layout.decoder_file(out, 0), decoder)
    save_torch(layout.vae_full_file(out, 0),
               {**{f"encoder.{n}": t for n, t in encoder.items()}, **{f"decoder.{n}": t for n, t in decoder.items()}})
    grid, _ = class_conditional_samples(trained, SAMPLES_PER_CLASS, generator(generator_seed, 0, Stream.LATENT))
    write_png_grid(layout.vae_samples_file(out, 0), grid, nrow=SAMPLES_PER_CLASS)
    entry = dp_sgd_privacy_entry(result.noise_multiplier, result.sample_rate, result.steps, FAMILY, NOTE,
                                 seeded=not noise.private)
    report = {
        "teacher_id": 0,
        "generator": FAMILY,
        "records": len(labels),
        "epochs": dp.epochs,
        "seconds": round(time.perf_counter() - started, 2),
        "seed": generator_seed,
        "latent_dim": trained.latent_dim,
        "conditional": True,
        "architecture": "mlp",
        "public_vae": {"path": str(prior_path), "sha256": sha256_file(prior_path)},
        "settings": asdict(dp),
        "privacy": entry,
        "dp_sgd": {
            **noise.describe(),
            "accountant": "opacus RDP (PrivacyEngine.make_private_with_epsilon)",
            "delta": dp.delta, "conversion": CONVERSION, "conversion_reference": CONVERSION_REFERENCES[CONVERSION],
            "noise_multiplier": result.noise_multiplier, "sample_rate": result.sample_rate, "steps": result.steps,
            "max_grad_norm": dp.max_grad_norm, "epsilon_opacus": result.epsilon,
            "epsilon_package_accounting": package_epsilon, "order_package_accounting": order,
        },
        "device": str(vote_device(accelerator)),
    }
    write_marker(report_file, report)  # written last: the stage's done-marker
    print(f"union_dp_generator: {len(labels)} records, {result.steps} steps at noise {result.noise_multiplier:.3f}, "
          f"epsilon {result.epsilon:.3f} at delta {dp.delta:g} (package accounting {package_epsilon:.3f}, {CONVERSION})"
          + ("" if noise.private else f"; {NOT_PRIVATE} (seeded noise)") + f" -> {report_file}")
    return report
