"""Do PATE labels on distorted public font renders lift a student above the same renders with their font labels?

A CPU prototype for a fast demo on all 250 teachers, outside the pipeline (no stage writes it yet):
250 small teachers (conv 1->16 -> conv 16->32 -> fc, about 1 M multiply-adds per image), each starting
from one classifier trained on public renders (font_digits_small) and trained 5 epochs on its 240-image
shard; queries are font_digits_small test renders distorted again by torchvision transforms v2 (elastic
alpha 40 / sigma 4, affine +-15 deg, +-10% shift, 0.8-1.1 scale, +-15 deg shear); Confident-GNMax
(T 200, sigma1 150, sigma2 40) labels them; a SmallCNN student pretrained 3 epochs on the clean renders is
fine-tuned 6 epochs (lr 3e-4) on the answered queries plus two public renders per answer, its epoch chosen
on a tenth of the answered queries (noisy labels: a DP output). The control fine-tunes the same student on
all the distorted queries with their font labels (no teacher, no privacy cost), so the difference between
the two is what the private labels add. Seeded: NOT PRIVATE; figures only.

python -m experiments.distorted_render_queries --data_dir data --seed 0 --out docs/results/distorted_render_queries_s0.json
"""

from __future__ import annotations

import argparse
import copy
import json
import time

import torch
import torch.nn.functional as F
import torchvision.transforms.v2 as T2
from torch import nn

from pate_lightning.data.shards import partition
from pate_lightning.data.sources import load_split, prepare
from pate_lightning.pate.student_nets import SmallCNN
from pate_lightning.privacy.analysis import rdp_gnmax_data_independent, rdp_threshold_data_independent, rdp_to_dp

MEAN, STD = 0.1307, 0.3081


def norm(x: torch.Tensor) -> torch.Tensor:
    return (x - MEAN) / STD


class Tiny(nn.Module):
    """conv5(1->16) -> pool -> conv5(16->32) -> pool -> fc(512->10): about 1 M multiply-adds per image."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2, self.fc = nn.Conv2d(1, 16, 5), nn.Conv2d(16, 32, 5), nn.Linear(512, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.c1(x)), 2)
        x = F.max_pool2d(F.relu(self.c2(x)), 2)
        return F.log_softmax(self.fc(x.flatten(1)), 1)


def train(net: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, lr: float, bs: int, seed: int) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr)
    net.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(y), generator=gen).split(bs):
            if len(idx) > 1:  # batch norm needs two
                opt.zero_grad()
                F.nll_loss(net(norm(x[idx])), y[idx]).backward()
                opt.step()
    return net


def accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    net.eval()
    with torch.no_grad():
        hits = torch.cat([net(norm(c)).argmax(1) for c in x.split(2000)]) == y
    net.train()
    return float(hits.float().mean())


def student_run(public, queries, labels, val, test, args, seed) -> tuple[float, float, int]:
    """Pretrain on the clean renders, fine-tune on (queries, labels) + rehearsal; epoch chosen on ``val``."""
    torch.manual_seed(seed)
    student = train(SmallCNN(), *public, args.pretrain_epochs, 1e-3, 128, seed)
    public_only = accuracy(student, *test)
    rows = torch.randperm(len(public[1]), generator=torch.Generator().manual_seed(seed))[: 2 * len(labels)]
    x, y = torch.cat([queries, public[0][rows]]), torch.cat([labels, public[1][rows]])
    best = (accuracy(student, *val), copy.deepcopy(student.state_dict()), -1)
    for epoch in range(args.epochs):
        train(student, x, y, 1, args.lr, 32, seed + 100 + epoch)
        score = accuracy(student, *val)
        if score > best[0]:
            best = (score, copy.deepcopy(student.state_dict()), epoch)
    student.load_state_dict(best[1])
    return public_only, accuracy(student, *test), best[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", default="data")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--teacher_epochs", type=int, default=5)
    parser.add_argument("--pretrain_epochs", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    started = time.perf_counter()
    prepare("font_digits_small", args.data_dir)
    as_float = lambda split: (split[0].float().unsqueeze(1) / 255, split[1])  # noqa: E731
    xtr, ytr = as_float(load_split("mnist", args.data_dir, True))
    test = as_float(load_split("mnist", args.data_dir, False))
    public = as_float(load_split("font_digits_small", args.data_dir, True))
    held_out = as_float(load_split("font_digits_small", args.data_dir, False))

    torch.manual_seed(args.seed)
    start = train(Tiny(), *public, 2, 1e-3, 64, args.seed)
    shards = partition(60_000, 250, 42)
    teachers = []
    for k in range(250):
        rows = torch.tensor(shards[k])
        net = Tiny()
        net.load_state_dict(start.state_dict())
        teachers.append(train(net, xtr[rows], ytr[rows], args.teacher_epochs, 3e-3, 32, args.seed * 1000 + k).eval())
    teacher_seconds = time.perf_counter() - started

    torch.manual_seed(args.seed)
    distort = T2.Compose([T2.ElasticTransform(alpha=40.0, sigma=4.0),
                          T2.RandomAffine(degrees=15, translate=(0.1, 0.1), scale=(0.8, 1.1), shear=15)])
    source = torch.arange(args.queries) % len(held_out[1])
    queries = torch.stack([distort(held_out[0][r]) for r in source])
    font_labels = held_out[1][source]
    with torch.no_grad():
        votes = torch.stack([t(norm(queries)).argmax(1) for t in teachers])  # (250, N)
    counts = F.one_hot(votes, 10).sum(0).float()
    gen = torch.Generator().manual_seed(args.seed)
    answered = counts.max(1).values + 150 * torch.randn(len(counts), generator=gen) >= 200
    noisy = (counts + 40 * torch.randn(counts.shape, generator=gen)).argmax(1)
    idx = answered.nonzero().flatten()
    idx = idx[torch.randperm(len(idx), generator=gen)]
    val_rows, fit_rows = idx[: len(idx) // 10], idx[len(idx) // 10 :]
    val = (queries[val_rows], noisy[val_rows])
    pate = student_run(public, queries[fit_rows], noisy[fit_rows], val, test, args, args.seed)
    control_val = (queries[val_rows], font_labels[val_rows])
    control = student_run(public, queries, font_labels, control_val, test, args, args.seed)
    orders = [1.5, 2, 3, 4, 5, 6, 8, 10, 12, 14, 16, 20, 24, 28, 32, 48, 64]
    rdp = args.queries * (rdp_threshold_data_independent(150, orders) + rdp_gnmax_data_independent(40, orders))
    result = {
        "NOT_PRIVATE": "seeded noise: figures only",
        "seed": args.seed, "queries_asked": args.queries, "answered": int(answered.sum()),
        "teacher_test_accuracy_on_first_2000": None,
        "labels_equal_font_class": float((noisy[answered] == font_labels[answered]).float().mean()),
        "epsilon_a_priori": round(rdp_to_dp(orders, rdp, 1e-5)[0], 2), "delta": 1e-5, "conversion": "balle2020",
        "public_only": pate[0], "student_pate": pate[1], "student_pate_epoch": pate[2],
        "control_font_labels": control[1], "teacher_seconds": round(teacher_seconds, 1),
        "seconds": round(time.perf_counter() - started, 1), "settings": vars(args),
    }
    with torch.no_grad():
        v = torch.stack([t(norm(test[0][:2000])).argmax(1) for t in teachers])
    result["teacher_test_accuracy_on_first_2000"] = {
        "mean": float((v == test[1][:2000]).float().mean()),
        "plurality": float((F.one_hot(v, 10).sum(0).argmax(1) == test[1][:2000]).float().mean()),
    }
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
