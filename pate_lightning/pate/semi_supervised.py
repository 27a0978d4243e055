"""FixMatch's unlabeled loss as a pure function (Sohn et al. 2020, arXiv:2001.07685, eq. 4).

The prediction on a weakly augmented view becomes a hard pseudo-label when its confidence reaches
the threshold; the strongly augmented view of the same image is trained towards it. Images below
the threshold contribute exactly nothing, and the mean is over all unlabeled images (not only the
confident ones), as in the paper, so the loss grows with the share of confident predictions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

METHODS = ("supervised", "fixmatch")


def pseudo_labels(weak_log_probs: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Hard pseudo-labels (U,) and the mask (U,) of predictions whose confidence is >= ``threshold``.

    >>> labels, mask = pseudo_labels(torch.tensor([[0.9, 0.1], [0.4, 0.6]]).log(), threshold=0.8)
    >>> labels.tolist(), mask.tolist()
    ([0, 1], [True, False])
    """
    confidence, labels = weak_log_probs.detach().exp().max(dim=1)  # (U,), (U,)
    return labels, confidence >= threshold


def fixmatch_unlabeled_loss(
    weak_log_probs: torch.Tensor, strong_log_probs: torch.Tensor, threshold: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked cross-entropy of the strong view against the weak view's pseudo-labels; and the mask.

    Args:
        weak_log_probs: (U, C) log-probabilities on the weak views (no gradient flows through them).
        strong_log_probs: (U, C) log-probabilities on the strong views of the same images.
        threshold: confidence in [0, 1] a pseudo-label needs to count.

    >>> weak = torch.tensor([[0.99, 0.01], [0.6, 0.4]]).log()
    >>> strong = torch.tensor([[0.5, 0.5], [0.1, 0.9]]).log()
    >>> loss, mask = fixmatch_unlabeled_loss(weak, strong, threshold=0.95)
    >>> round(float(loss), 4), mask.tolist()  # only the first image counts: -log(0.5) / 2
    (0.3466, [True, False])
    """
    if weak_log_probs.shape != strong_log_probs.shape or weak_log_probs.ndim != 2:
        raise ValueError(f"weak and strong log-probabilities must both be (U, C), got "
                         f"{tuple(weak_log_probs.shape)} and {tuple(strong_log_probs.shape)}")
    if len(weak_log_probs) == 0:
        return strong_log_probs.sum() * 0.0, torch.zeros(0, dtype=torch.bool)
    labels, mask = pseudo_labels(weak_log_probs, threshold)
    per_image = F.nll_loss(strong_log_probs, labels, reduction="none")  # (U,)
    # where, not a product: a masked image with a -inf log-probability must give 0, not NaN
    return torch.where(mask, per_image, 0.0).mean(), mask
