"""Dropping answered labels that a public-pretrained student contradicts with high confidence.

Confident-GNMax's answers on the papers' protocol are 96-99% right, and the FixMatch student's test accuracy
follows that share from run to run (docs/results/student_repeats.json, ``label_test_correlation``). A student
pretrained only on public digits never saw those labels, so where it is very sure of another class the label
is likely wrong: over 12 fresh-noise runs of row (b) (3,516 answers, 87 wrong) it contradicted 45 labels at
confidence 0.99, 27 of them wrong, and 115 at 0.9, 45 wrong (docs/results/label_filter_check.json,
experiments/label_filter_check.py).
A dropped label's image stays in FixMatch's unlabeled pool. Post-processing of released labels with a
public model: no privacy cost.
"""

from __future__ import annotations

import torch

from pate_lightning.classifiers.loading import classify_log_probs
from pate_lightning.pate.student import StudentModule


def contradicted(log_probs: torch.Tensor, labels: torch.Tensor, threshold: float) -> torch.Tensor:
    """(N,) mask of labels whose prediction is another class with probability >= ``threshold``.

    >>> log_probs = torch.tensor([[0.995, 0.005], [0.6, 0.4], [0.001, 0.999]]).log()
    >>> contradicted(log_probs, torch.tensor([1, 1, 1]), threshold=0.99).tolist()
    [True, False, False]
    """
    confidence, predicted = log_probs.exp().max(dim=1)  # (N,), (N,)
    return (predicted != labels) & (confidence >= threshold)


def predict_log_probs(model: StudentModule, images: torch.Tensor) -> torch.Tensor:
    """(N, C) log-probabilities of ``model``'s network in evaluation mode, on the CPU; the module's mode is
    restored, since Lightning's fit does not switch a module back to training."""
    was_training = model.training
    log_probs = classify_log_probs(model.net, model.normalize, images, next(model.parameters()).device)
    model.train(was_training)
    return log_probs.cpu()
