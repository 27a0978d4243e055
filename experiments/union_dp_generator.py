"""Does one font-prior CVAE fine-tuned by DP-SGD over the union of all shards teach a student more than the prior alone?

Route (b) of the union generator (the DPDM / FETA-Pro protocol): the generator's class-conditional samples, labelled
with the class asked for, are a student's only training data (optionally after pretraining on public font renders);
no PATE, so the whole end-to-end epsilon is the generator's. Rows: the student on public renders alone, on the
public prior's samples alone, and on the union generator's samples at each epsilon. Students are ``small_cnn``
(the package's ``train_student``), tested on the last 5,000 MNIST test images (protocol ``half``); their accuracy
on 2,000 held-out font renders (``font_acc``) is the public figure any setting may be chosen on.

    PYTHONPATH=. OMP_NUM_THREADS=1 python experiments/union_dp_generator.py --data_dir data \
        --prior runs/union_proto/public_vae/teacher_vaes/teacher_0/vae_full.pth --epsilons 1 3 10 --seed 0

``--seed N`` seeds the DP noise and the Poisson batches: reproducible and NOT PRIVATE (every row says so); without
it the noise comes from OS entropy.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
import json
import tempfile
import time
from pathlib import Path
from typing import Optional

import torch

from pate_lightning.data.sources import load_split
from pate_lightning.generators.union_dp import UnionCVAE, UnionDPSettings, class_conditional_samples, train_union_dp
from pate_lightning.io import load_state_dict, write_json
from pate_lightning.pate.queries import holdout_set
from pate_lightning.pate.student_pretrain import public_pretraining_set
from pate_lightning.pate.student_training import StudentSettings, train_student
from pate_lightning.privacy import NOT_PRIVATE, noise_source
from pate_lightning.privacy.dp_sgd_accounting import dp_sgd_epsilon
from pate_lightning.seeding import Stream, generator, private_generators


def student_rows(images: torch.Tensor, labels: torch.Tensor, args: argparse.Namespace, test, font_test, public,
                 seed: int) -> dict:
    """The student on (images, labels) alone, and after public pretraining (``--pretrain``): accuracies."""
    out = {}
    variants = [("alone", "none", 0.0)] + ([("pretrained", "font_digits", 0.0)] if args.pretrain else [])
    variants += [(f"pretrained_mix{args.pretrain_mix:g}", "font_digits", args.pretrain_mix)] if args.pretrain_mix else []
    for name, pretrain, mix in variants:
        settings = StudentSettings(epochs=args.student_epochs, architecture="small_cnn", val_fraction=0.0,
                                   pretrain=pretrain, pretrain_epochs=args.pretrain_epochs, pretrain_mix=mix).check()
        with tempfile.TemporaryDirectory() as root:
            report = train_student(images, labels, test, settings, "cpu", seed, Path(root),
                                   public=public if pretrain != "none" else None, selection=font_test)
        out[name] = {"mnist_acc": report["test_accuracy"], "font_acc": report["selection_accuracy"],
                     "seconds": report["seconds"]}
        if report["pretraining"]:
            out["public_renders_only"] = {"mnist_acc": report["pretraining"]["test_accuracy"],
                                          "seconds": report["pretraining"]["seconds"]}
    return out


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", default="data")
    parser.add_argument("--prior", required=True, help="the public prior's vae_full.pth (conditional MLP)")
    parser.add_argument("--epsilons", type=float, nargs="*", default=[1.0, 3.0, 10.0])
    parser.add_argument("--delta", type=float, default=1e-5)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=500)
    parser.add_argument("--max_grad_norm", type=float, default=1.0)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--trainable", default="all")
    parser.add_argument("--per_class", type=int, default=1000, help="generated samples per class for the student")
    parser.add_argument("--student_epochs", type=int, default=5)
    parser.add_argument("--pretrain", action="store_true", help="also a student pretrained on font renders")
    parser.add_argument("--pretrain_epochs", type=int, default=2)
    parser.add_argument("--pretrain_mix", type=float, default=0.0,
                        help="also a pretrained student that keeps this many public renders per sample (rehearsal)")
    parser.add_argument("--skip_prior", action="store_true", help="no prior-only row")
    parser.add_argument("--seed", type=int, default=None, help="seeded DP noise and batches: NOT PRIVATE")
    parser.add_argument("--tag", default="")
    parser.add_argument("--out", default="docs/results/union_dp_generator.json")
    args = parser.parse_args(argv)

    test = holdout_set(args.data_dir, "half")
    test = (test[0].unsqueeze(1).float().div(255) if test[0].dtype == torch.uint8 else test[0], test[1])
    font_images, font_labels = load_split("font_digits", args.data_dir, train=False)
    font_test = (font_images[:2000].unsqueeze(1).float().div(255), font_labels[:2000].long())
    public = public_pretraining_set("font_digits", args.data_dir) if args.pretrain or args.pretrain_mix else None
    images, labels = load_split("mnist", args.data_dir, train=True)  # the union of all 250 shards: 60,000 records
    images, labels = images.unsqueeze(1).float().div(255), labels.long()
    prior = load_state_dict(Path(args.prior), "public prior")
    seed = 0 if args.seed is None else args.seed  # student init and latents: not privacy noise
    out_path = Path(args.out)
    rows = json.loads(out_path.read_text())["rows"] if out_path.is_file() else []

    def record(row: dict) -> None:
        rows.append({**row, "tag": args.tag})
        write_json(out_path, {"rows": rows})
        print(json.dumps(row))

    if not args.skip_prior:
        started = time.perf_counter()
        samples = class_conditional_samples(UnionCVAE.from_vae_full(prior), args.per_class,
                                            generator(seed, 0, Stream.LATENT))
        record({"row": "public prior samples", "epsilon": 0.0, "per_class": args.per_class,
                **student_rows(*samples, args, test, font_test, public, seed),
                "seconds": round(time.perf_counter() - started, 1)})
    for epsilon in args.epsilons:
        started = time.perf_counter()
        settings = UnionDPSettings(target_epsilon=epsilon, delta=args.delta, epochs=args.epochs,
                                   batch_size=args.batch_size, max_grad_norm=args.max_grad_norm, lr=args.lr,
                                   trainable=args.trainable).check()
        noise = noise_source(args.seed)
        sampling = private_generators(args.seed, [0], Stream.POISSON)[0]
        result = train_union_dp(UnionCVAE.from_vae_full(prior), images, labels, settings, noise.votes, sampling,
                                generator(seed, 0, Stream.NOISE))
        dp_seconds = time.perf_counter() - started
        package, _ = dp_sgd_epsilon(result.noise_multiplier, result.sample_rate, result.steps, args.delta)
        samples = class_conditional_samples(result.model, args.per_class, generator(seed, 0, Stream.LATENT))
        record({"row": "union DP generator samples", "epsilon": epsilon, "epsilon_opacus": result.epsilon,
                "epsilon_package": package, "delta": args.delta, "conversion": "balle2020",
                "noise_multiplier": result.noise_multiplier, "sample_rate": result.sample_rate,
                "steps": result.steps, "settings": asdict(settings),
                "per_class": args.per_class, "dp_seconds": round(dp_seconds, 1),
                **student_rows(*samples, args, test, font_test, public, seed),
                "private": noise.private, "note": "" if noise.private else NOT_PRIVATE,
                "seconds": round(time.perf_counter() - started, 1)})

if __name__ == "__main__":
    main()
