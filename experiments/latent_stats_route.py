"""Does a one-shot DP release of class statistics in the public latent space make better queries?

Instead of gradients (DP-SGD), the private data is touched once: every record is encoded by the public
encoder (trained on font_digits only), its posterior mean ``z`` (L dims) is clipped to L2 norm ``bound``,
and per class the sum of ``z``, the sum of ``z z^T`` and the count are released under the Gaussian
mechanism. One record (add/remove) moves one class's ``sum / bound`` by <= 1, its ``outer sum / bound^2`` by
<= 1 (Frobenius: ``|z|^2 / bound^2``) and its count by 1, so the release is three Gaussian mechanisms of
sensitivity 1 and noise std ``sigma``: RDP ``3 alpha / (2 sigma^2)`` (Mironov 2017, Prop. 3 and 7). A
release per teacher (``--per_teacher``) costs the same, by parallel composition over disjoint shards, but
its pooled estimate carries sqrt(teachers) times the noise; the default releases once over the union of
the shards. Everything after the release (class means and covariances, sampling, decoding) is
post-processing. The pool is written as ``combine`` writes one, with the privacy contract's stages, so
``pate-lightning pate --synthetic_samples`` composes this generator's curve with PATE's.

    python -m experiments.latent_stats_route --run_dir RUN --data_dir DATA --epsilon 1 --out RUN/latent_stats
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from pate_lightning import layout
from pate_lightning.data.sources import load_split
from pate_lightning.generators.decoders import build_vae
from pate_lightning.io import load_state_dict, save_torch, sha256_file, write_csv, write_json
from pate_lightning.privacy import analysis
from pate_lightning.privacy.dp_sgd_accounting import dp_sgd_rdp
from pate_lightning.privacy.ledger import contract_entry
from pate_lightning.seeding import Stream, generator, private_generators
from pate_lightning.stacked.layers import load_member_state_dict

RELEASES = 3  # sums, outer-product sums, counts: three sensitivity-1 Gaussian mechanisms
DELTA = 1e-5


def clip_rows(z: torch.Tensor, bound: float) -> torch.Tensor:
    """Each row scaled to L2 norm <= ``bound`` (rows inside it unchanged).

    >>> clip_rows(torch.tensor([[3.0, 4.0], [0.3, 0.4]]), 1.0)
    tensor([[0.6000, 0.8000],
            [0.3000, 0.4000]])
    """
    norms = z.norm(dim=1, keepdim=True)  # (N, 1)
    return z * (bound / norms.clamp(min=bound))


def release_moments(
    z: torch.Tensor, labels: torch.Tensor, num_classes: int, bound: float, sigma: float, gen: torch.Generator,
) -> dict[str, torch.Tensor]:
    """The noisy per-class sums (C, L), outer-product sums (C, L, L) and counts (C,), in units of the clipped data.

    Noise std ``sigma`` on the sensitivity-1 scaled statistics, i.e. ``sigma * bound`` on the sums and
    ``sigma * bound^2`` on the outer sums.
    """
    z = clip_rows(z, bound)  # (N, L)
    one_hot = torch.nn.functional.one_hot(labels, num_classes).to(z.dtype)  # (N, C)
    sums = one_hot.T @ z  # (C, L)
    outer = torch.einsum("nc,ni,nj->cij", one_hot, z, z)  # (C, L, L)
    counts = one_hot.sum(0)  # (C,)
    return {
        "sums": sums + sigma * bound * torch.randn(sums.shape, generator=gen),
        "outer": outer + sigma * bound**2 * torch.randn(outer.shape, generator=gen),
        "counts": counts + sigma * torch.randn(counts.shape, generator=gen),
    }


def class_gaussians(released: dict[str, torch.Tensor], min_count: float = 1.0,
                    min_eigenvalue: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
    """Means (C, L) and covariances (C, L, L) from (pooled) released moments: post-processing only.

    The noisy outer sums are symmetrised and the covariance's eigenvalues floored, so it can be sampled.

    >>> z = torch.tensor([[1.0, 0.0], [3.0, 0.0]])
    >>> released = {"sums": z.sum(0, keepdim=True), "outer": (z.T @ z)[None], "counts": torch.tensor([2.0])}
    >>> means, covs = class_gaussians(released)
    >>> means.tolist(), covs[0, 0, 0].item()
    ([[2.0, 0.0]], 1.0)
    """
    counts = released["counts"].clamp(min=min_count)[:, None]  # (C, 1)
    means = released["sums"] / counts  # (C, L)
    outer = released["outer"]
    second = 0.5 * (outer + outer.transpose(1, 2)) / counts[:, :, None]  # (C, L, L)
    covs = second - means[:, :, None] * means[:, None, :]
    values, vectors = torch.linalg.eigh(covs)
    return means, vectors @ torch.diag_embed(values.clamp(min=min_eigenvalue)) @ vectors.transpose(1, 2)


def release_rdp(sigma: float, orders=analysis.DEFAULT_ORDERS) -> np.ndarray:
    """RDP of the release: three Gaussian mechanisms of sensitivity 1 and noise ``sigma``.

    >>> float(release_rdp(2.0, orders=[4.0])[0])  # 3 * 4 / (2 * 2^2)
    1.5
    """
    return dp_sgd_rdp(sigma, 1.0, RELEASES, orders)  # sampling rate 1, 3 steps: the plain Gaussian composed 3 times


def sigma_for_epsilon(epsilon: float, delta: float = DELTA, tolerance: float = 1e-3) -> float:
    """The least noise (to ``tolerance``) whose release costs <= ``epsilon`` at ``delta`` (balle2020)."""
    low, high = 0.05, 1000.0
    while high - low > tolerance:
        mid = 0.5 * (low + high)
        eps = analysis.rdp_to_dp(analysis.DEFAULT_ORDERS, release_rdp(mid), delta, "balle2020")[0]
        low, high = (low, mid) if eps <= epsilon else (mid, high)
    return high


def sample_pool(decoder: torch.nn.Module, means: torch.Tensor, covs: torch.Tensor, per_class: int,
                gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``per_class`` decoded draws of each class's Gaussian: images (C * n, 1, 28, 28) in [0, 1], labels (C * n,)."""
    num_classes, latent_dim = means.shape
    factors = torch.linalg.cholesky(covs)  # (C, L, L)
    eps = torch.randn(num_classes, per_class, latent_dim, generator=gen)  # (C, n, L)
    z = means[:, None, :] + eps @ factors.transpose(1, 2)  # (C, n, L)
    labels = torch.arange(num_classes).repeat_interleave(per_class)  # (C * n,)
    with torch.no_grad():
        images = decoder(z.reshape(1, -1, latent_dim), labels[None])  # (1, C * n, 784)
    return images.reshape(-1, 1, 28, 28), labels


def public_vae(path: Path) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The public conditional MLP VAE (one member) from its vae_full.pth."""
    state = load_state_dict(path, "public VAE")
    parts = {side: {k.split(".", 1)[1]: v for k, v in state.items() if k.startswith(side + ".")} for side in ("encoder", "decoder")}
    hidden = tuple(int(parts["encoder"][f"hidden.{i}.weight"].shape[0])
                   for i in range(sum(k.startswith("hidden.") and k.endswith("weight") for k in parts["encoder"])))
    num_classes = int(parts["decoder"]["conditional_classes"])
    latent_dim = int(parts["decoder"]["hidden.0.weight"].shape[1]) - num_classes
    encoder, decoder = build_vae("mlp", 1, latent_dim, hidden, num_classes)
    load_member_state_dict(encoder, 0, parts["encoder"])
    load_member_state_dict(decoder, 0, parts["decoder"])
    return encoder.eval(), decoder.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run_dir", required=True, help="holds shard_indices.json and public_vae/")
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--out", required=True, help="folder for combined_{samples.pt,labels.csv,metadata.json}")
    parser.add_argument("--epsilon", type=float, default=1.0, help="the release's epsilon at delta 1e-5")
    parser.add_argument("--bound", type=float, default=4.0, help="L2 clip of each latent mean (fixed in advance)")
    parser.add_argument("--per_class", type=int, default=1000)
    parser.add_argument("--per_teacher", action="store_true", help="release per shard, then pool (more noise)")
    parser.add_argument("--source", default="mnist", choices=("mnist", "font_digits"),
                        help="font_digits: the public control, the same statistics of the public set without noise")
    parser.add_argument("--noise_seed", type=int, default=None, help="seeds the noise: reproducible, NOT private")
    parser.add_argument("--seed", type=int, default=42, help="the public sampling of the pool")
    args = parser.parse_args()
    started = time.perf_counter()
    run = Path(args.run_dir)
    public = args.source == "font_digits"
    images, labels = load_split(args.source, args.data_dir, train=True)  # (60000, 28, 28) uint8, (60000,)
    encoder, decoder = public_vae(run / "public_vae/teacher_vaes/teacher_0/vae_full.pth")
    sigma = 0.0 if public else sigma_for_epsilon(args.epsilon)
    shards = {} if public else {int(k): v for k, v in json.loads((run / "shard_indices.json").read_text()).items()}
    groups = ([list(range(len(labels)))] if public else
              [shards[k] for k in sorted(shards)] if args.per_teacher else [[i for k in sorted(shards) for i in shards[k]]])
    noise = private_generators(args.noise_seed, [0], Stream.DP_NOISE)[0]
    pooled, clipped = None, 0
    for rows in groups:
        index = torch.as_tensor(rows)
        x = images[index].float().div(255).unsqueeze(0)  # (1, n, 28, 28)
        with torch.no_grad():
            z = encoder(x, labels[index].long()[None])[0][0]  # (n, L) posterior means
        clipped += int((z.norm(dim=1) > args.bound).sum())
        released = release_moments(z, labels[index].long(), 10, args.bound, sigma, noise)
        pooled = released if pooled is None else {k: pooled[k] + released[k] for k in pooled}
    means, covs = class_gaussians(pooled)
    samples, pool_labels = sample_pool(decoder, means, covs, args.per_class, generator(args.seed, 0, Stream.LATENT))
    rdp = None if public else release_rdp(sigma)
    epsilon = 0.0 if public else analysis.rdp_to_dp(analysis.DEFAULT_ORDERS, rdp, DELTA, "balle2020")[0]
    private = args.noise_seed is None
    control = "class means and covariances of the public encoder's latents of font_digits (public, no noise)"
    note = control if public else (f"class means and covariances of the public encoder's latents, clipped to {args.bound}, released once "
            f"{'per teacher' if args.per_teacher else 'over the union of the shards'} by the Gaussian mechanism "
            f"(3 releases, sigma {sigma:.4g}): epsilon {epsilon:.3g} at delta {DELTA:g} (balle2020); "
            + ("noise from OS entropy" if private else f"noise_seed={args.noise_seed}: NOT PRIVATE"))
    stages = [contract_entry(stage="generator", name="latent_stats", reads_private_data=not public, dp=not public,
                             rdp=rdp, note=note, seeded=not (public or private)),
              contract_entry(stage="selection", name="pate", reads_private_data=False, dp=False,
                             note="every sample is a PATE query; Confident-GNMax's threshold selects")]
    out = Path(args.out)
    files = {"samples": save_torch(out / "combined_samples.pt", samples.float().contiguous()),
             "labels": write_csv(out / "combined_labels.csv", ["index", "label", "confidence"],
                                 [[i, int(c), "1.000000"] for i, c in enumerate(pool_labels)])}
    write_json(out / "combined_metadata.json", {
        "name": "combined", "num_samples": len(pool_labels), "generator": "latent_stats",
        "sigma": sigma, "bound": args.bound, "epsilon": {"value": epsilon, "delta": DELTA, "conversion": "balle2020"},
        "per_teacher": args.per_teacher, "private": private, "seconds": round(time.perf_counter() - started, 2),
        "privacy": {"stages": stages},
        "outputs": {key: {"file": path.name, "sha256": sha256_file(path)} for key, path in files.items()},
    })
    # a count of the private records the clip bound moved: computed without noise, so it stays in private/
    write_json(layout.private_dir(Path(args.run_dir)) / "latent_stats_clipped.json",
               {"not_for_release": True, "records_clipped": clipped, "records": sum(len(g) for g in groups)})
    print(json.dumps({"epsilon": epsilon, "sigma": sigma, "out": str(out),
                      "seconds": round(time.perf_counter() - started, 2)}))


if __name__ == "__main__":
    main()
