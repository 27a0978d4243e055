"""How far does the font prior alone go? A UCStubModel trained only on font digits, scored on MNIST test.

Each epoch renders a fresh augmented set (seed = base seed + epoch), so the classifier never sees the
same distortion twice; MNIST is read only for the final test score.

    PYTHONPATH=. python experiments/font_prior_classifier.py --data_dir data --epochs 6 --per_class 3000
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from pate_lightning.data import font_digits
from pate_lightning.data.sources import load_split
from pate_lightning.io import write_json
from pate_lightning.classifiers.model import UCStubModel

MEAN, STD = 0.1307, 0.3081


def accuracy(model: UCStubModel, images: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        x = (images.unsqueeze(1).float() / 255 - MEAN) / STD
        predicted = torch.cat([model(x[i : i + 1000]).argmax(1) for i in range(0, len(x), 1000)])
    model.train()
    return float((predicted == labels).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data_dir", default="data")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--per_class", type=int, default=3000, help="fresh renders per class per epoch")
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--out", default="docs/results/font_prior_classifier.json")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    started = time.perf_counter()
    glyphs, fonts = font_digits.render_glyphs(font_digits.font_files())
    test_images, test_labels = load_split("mnist", args.data_dir, train=False)
    model = UCStubModel()
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    history = []
    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        images, labels = font_digits.render(args.per_class, args.seed + epoch, glyphs)
        render_s = time.perf_counter() - t0
        order = torch.randperm(len(labels))
        for start in range(0, len(order), args.batch_size):
            rows = order[start : start + args.batch_size]
            x = (images[rows].unsqueeze(1).float() / 255 - MEAN) / STD
            loss = F.nll_loss(model(x), labels[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        score = accuracy(model, test_images, test_labels)
        history.append({"epoch": epoch, "mnist_test_accuracy": score, "render_s": round(render_s, 1),
                        "epoch_s": round(time.perf_counter() - t0, 1)})
        print(json.dumps(history[-1]), flush=True)
    result = {
        "what": "UCStubModel trained only on font_digits (fresh augmentation each epoch), scored on MNIST test (10,000)",
        "mnist_test_accuracy": history[-1]["mnist_test_accuracy"],
        "best_epoch_accuracy": max(h["mnist_test_accuracy"] for h in history),
        "fonts": [p.name for p in fonts],
        "args": vars(args),
        "history": history,
        "seconds": round(time.perf_counter() - started, 1),
        "machine": "2 shared CPU cores, OMP_NUM_THREADS=1",
        "command": f"PYTHONPATH=. OMP_NUM_THREADS=1 python experiments/font_prior_classifier.py --epochs {args.epochs} --per_class {args.per_class}",
    }
    write_json(Path(args.out), result)


if __name__ == "__main__":
    main()
