"""Conditions C5 and C6 of the GNMax smooth-sensitivity analysis (Papernot et al. 2018, Appendix B.4.2).

The local-sensitivity bound of ``smooth_sensitivity.local_sensitivity_gnmax`` (Proposition 13) is valid only
where the data-dependent RDP beta(q) is non-decreasing on (0, q0) (C5) and beta(BU(q)) - beta(q) is
non-decreasing on (0, BL(q0)) (C6). Both depend on sigma, the number of classes and the order alone, so they
are checked before any vote is read; where one fails the bound can be exceeded (at order 16 with 10 classes
C6 fails for sigma 1, 3 and 10) and the data-dependent epsilon must not be released. tf-privacy's
``research/pate_2018/smooth_sensitivity.py: check_conditions`` checks the sign of the symbolic derivative
with a local minimiser; this checks the differences of the functions the package actually uses (capped at
the data-independent bound) on a dense grid of log q, which needs no sympy and finds every dip the grid
resolves.
"""

from __future__ import annotations

import functools
from typing import Optional

import numpy as np

from pate_lightning.privacy import analysis
from pate_lightning.privacy import smooth_sensitivity as ss

GRID_POINTS = 20001
# beta(q) is already below 1e-30 of its cap at log q = 20 log q0 for every sigma tried; the grid reaches -50
# at least, so small q0 are covered too
GRID_REACH = 20.0


def _non_decreasing(values: np.ndarray) -> bool:
    """True when no step goes down by more than rounding (1e-12 of the largest value)."""
    return bool(np.min(np.diff(values)) >= -1e-12 * max(float(np.max(np.abs(values))), 1e-300))


@functools.lru_cache(maxsize=256)
def gnmax_conditions_failure(sigma: float, num_classes: int, order: float) -> Optional[str]:
    """None where C5 and C6 hold for GNMax(sigma) with ``num_classes`` at ``order``; else which fails and why.

    >>> gnmax_conditions_failure(40.0, 10, 16.0) is None
    True
    >>> gnmax_conditions_failure(10.0, 10, 16.0)[:2]
    'C6'
    """
    try:
        logq0 = ss.compute_logq0_gnmax(sigma, order)
    except ValueError as error:
        return f"Theorem 6 gives no data-dependent bound ({error})"
    grid = np.linspace(min(GRID_REACH * logq0, -50.0), logq0, GRID_POINTS)
    if not _non_decreasing(ss.rdp_gnmax_smooth(grid, sigma, order)):
        return (f"C5 fails: the data-dependent RDP at order {order:g} is not non-decreasing in q below q0 = "
                f"exp({logq0:.4g}) for sigma {sigma:g}")
    logq1 = float(ss._log_neighbour_q(np.array([logq0]), sigma, num_classes, -1.0)[0])
    grid = grid[grid <= logq1]
    up = ss.rdp_gnmax_smooth(ss._log_neighbour_q(grid, sigma, num_classes, 1.0), sigma, order)
    if grid.size < 2 or not _non_decreasing(up - ss.rdp_gnmax_smooth(grid, sigma, order)):
        return (f"C6 fails: beta(BU(q)) - beta(q) at order {order:g} is not non-decreasing below BL(q0) = "
                f"exp({logq1:.4g}) for sigma {sigma:g} with {num_classes} classes, so the local-sensitivity bound "
                f"can be exceeded")
    return None


def gnmax_sigma(mechanism: str, parameters: dict[str, float]) -> float:
    """The noise of the GNMax step: ``sigma`` for GNMax, ``sigma2`` for Confident-GNMax."""
    return float(parameters["sigma"] if mechanism == "gnmax" else parameters["sigma2"])


def unanimous_votes(num_classes: int, num_teachers: int) -> np.ndarray:
    """The histogram (num_classes,) of ``num_teachers`` all voting for class 0 (a public histogram)."""
    return np.eye(num_classes)[0] * num_teachers


def gnmax_term_constant(sigma: float, num_classes: int, num_teachers: int, order: float) -> bool:
    """Whether even unanimous votes get GNMax's data-independent cost at ``order``: then every histogram does
    (reference ``is_data_independent_always_opt_gaussian``) and the GNMax term is a constant with sensitivity 0.
    A ValueError where Theorem 6 gives no q0.
    """
    unanimous = unanimous_votes(num_classes, num_teachers)
    return bool(analysis.compute_logq_gnmax(unanimous, sigma) >= ss.compute_logq0_gnmax(sigma, order))


def release_refusal(
    mechanism: str, parameters: dict[str, float], num_classes: int, num_teachers: int, order: float
) -> Optional[str]:
    """Why the data-dependent epsilon of ``mechanism`` may not be released at ``order`` (None: it may).

    Reads public parameters only. Where even unanimous votes get GNMax's data-independent cost the GNMax term
    is a constant and nothing needs the conditions (the reference skips its check there too).

    >>> release_refusal("gnmax", {"sigma": 40.0}, 10, 250, 16.0) is None
    True
    >>> release_refusal("gnmax", {"sigma": 3.0}, 10, 250, 16.0).startswith("the smooth-sensitivity release")
    True
    """
    sigma = gnmax_sigma(mechanism, parameters)
    failure = gnmax_conditions_failure(sigma, int(num_classes), float(order))
    if failure is None:
        return None
    try:
        if gnmax_term_constant(sigma, num_classes, num_teachers, float(order)):
            return None
    except ValueError:
        pass  # no q0: Theorem 6 does not apply, the failure stands
    return (f"the smooth-sensitivity release of the data-dependent epsilon (Papernot et al. 2018, Theorem 23) is "
            f"not valid here: {failure} (Appendix B.4.2). Only the data-independent epsilon is published; to "
            f"release the data-dependent one raise sigma or choose another release order")


__all__ = ["gnmax_conditions_failure", "gnmax_sigma", "gnmax_term_constant", "release_refusal", "unanimous_votes"]
