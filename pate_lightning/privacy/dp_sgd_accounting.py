"""Privacy of DP-SGD for one teacher: the Poisson-subsampled Gaussian, composed over steps.

The RDP curve comes from dp-accounting's ``RdpAccountant`` (``PoissonSampledDpEvent`` of a
``GaussianDpEvent``, composed ``steps`` times; Mironov, Talwar & Zhang 2019), evaluated on the
package's shared grid ``DEFAULT_ORDERS`` so the privacy ledger can compose it with PATE's curves.
Neighbouring shards differ by adding or removing one record (the relation Poisson sampling amplifies).
Epsilon is converted with ``analysis.rdp_to_dp``; the conversion is always named next to it.
Each record lives in one teacher's shard, so the generator stage costs one teacher's curve
(the max over teachers when they differ): parallel composition.
"""

from __future__ import annotations

import logging
import math
from typing import Sequence

import dp_accounting
import numpy as np

from pate_lightning.privacy.analysis import DEFAULT_ORDERS, rdp_to_dp

# above this the noise drowns any gradient; a target that needs more is reported as unreachable
MAX_NOISE_MULTIPLIER = 1e3


def _check_sampling(sample_rate: float, steps: int) -> None:
    if not (isinstance(sample_rate, (int, float)) and 0 < sample_rate <= 1):
        raise ValueError(f"DP-SGD sample_rate must lie in (0, 1], got {sample_rate!r}")
    if not (isinstance(steps, int) and steps >= 0):
        raise ValueError(f"DP-SGD steps must be an integer >= 0, got {steps!r}")


def dp_sgd_rdp(
    noise_multiplier: float, sample_rate: float, steps: int, orders: Sequence[float] = DEFAULT_ORDERS
) -> np.ndarray:
    """RDP of ``steps`` Poisson-subsampled Gaussian steps, one value per order.

    >>> rdp = dp_sgd_rdp(1.0, 0.01, 1000, orders=[2.0, 32.0])
    >>> bool(rdp[0] < rdp[1])  # RDP grows with the order
    True
    >>> float(dp_sgd_rdp(1.0, 1.0, 1, orders=[2.0])[0])  # no subsampling: the Gaussian's order / (2 sigma^2)
    1.0
    """
    if not (noise_multiplier > 0 and math.isfinite(noise_multiplier)):
        raise ValueError(f"DP-SGD noise_multiplier must be a finite number > 0, got {noise_multiplier!r}")
    _check_sampling(sample_rate, steps)
    accountant = dp_accounting.rdp.RdpAccountant(list(orders))
    event = dp_accounting.PoissonSampledDpEvent(sample_rate, dp_accounting.GaussianDpEvent(noise_multiplier))
    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.ERROR)  # its non-convergence warning is handled below
    try:
        accountant.compose(event, steps)
    finally:
        absl.setLevel(level)
    return _fill_unconverged(np.asarray(orders, dtype=float), accountant.rdp)


def _fill_unconverged(orders: np.ndarray, rdp: np.ndarray) -> np.ndarray:
    """Each value becomes the least value at its order or any larger one: still a valid bound, since
    Renyi divergence is non-decreasing in the order (van Erven & Harremoes 2014, Thm. 3).

    dp-accounting returns inf where its series for a fractional order does not converge, and values
    above the next integer order's near it (both seen at orders 1.25-1.75 with sample rates above 0.1).

    >>> _fill_unconverged(np.array([1.5, 1.75, 2.0, 3.0]), np.array([np.inf, 0.5, 0.2, 0.3])).tolist()
    [0.2, 0.2, 0.2, 0.3]
    """
    filled = rdp.copy()
    bound = np.inf
    for i in np.argsort(orders)[::-1]:
        bound = min(bound, filled[i])
        filled[i] = bound
    return filled


def dp_sgd_epsilon(
    noise_multiplier: float, sample_rate: float, steps: int, delta: float, conversion: str = "balle2020"
) -> tuple[float, float]:
    """(epsilon, best order) at ``delta`` on ``DEFAULT_ORDERS``.

    >>> eps, order = dp_sgd_epsilon(1.1, 256 / 60000, 60 * 60000 // 256, 1e-5)  # Abadi et al.'s MNIST setting
    >>> 2.0 < eps < 3.5
    True
    """
    return rdp_to_dp(DEFAULT_ORDERS, dp_sgd_rdp(noise_multiplier, sample_rate, steps), delta, conversion)


def solve_noise_multiplier(
    target_epsilon: float, delta: float, sample_rate: float, steps: int, conversion: str = "balle2020",
    tolerance: float = 1e-3,
) -> float:
    """The smallest noise multiplier (to ``tolerance``) whose epsilon at ``delta`` is <= ``target_epsilon``.

    Raises a ValueError when no noise multiplier up to ``MAX_NOISE_MULTIPLIER`` reaches the target
    (on the finite order grid epsilon never falls below about log(1/delta) / (max order - 1)).

    >>> sigma = solve_noise_multiplier(8.0, 1e-5, 64 / 240, 160)
    >>> dp_sgd_epsilon(sigma, 64 / 240, 160, 1e-5)[0] <= 8.0 < dp_sgd_epsilon(sigma - 0.01, 64 / 240, 160, 1e-5)[0]
    True
    """
    if not (target_epsilon > 0 and math.isfinite(target_epsilon)):
        raise ValueError(f"DP-SGD target_epsilon must be a finite number > 0, got {target_epsilon!r}")
    _check_sampling(sample_rate, steps)

    def epsilon(sigma: float) -> float:
        return dp_sgd_epsilon(sigma, sample_rate, steps, delta, conversion)[0]

    if epsilon(MAX_NOISE_MULTIPLIER) > target_epsilon:
        raise ValueError(
            f"DP-SGD target_epsilon {target_epsilon} is unreachable at delta {delta} with sample rate "
            f"{sample_rate:.4g} over {steps} steps: even noise multiplier {MAX_NOISE_MULTIPLIER:g} gives epsilon "
            f"{epsilon(MAX_NOISE_MULTIPLIER):.4g} ({conversion} conversion). Raise target_epsilon or delta, "
            "or train fewer steps / at a lower sample rate."
        )
    low, high = 0.0, 1.0
    while epsilon(high) > target_epsilon:
        low, high = high, high * 2
    while high - low > tolerance:
        middle = (low + high) / 2
        if middle > 0 and epsilon(middle) <= target_epsilon:
            high = middle
        else:
            low = middle
    return high


def dp_sgd_privacy_entry(
    noise_multiplier: float, sample_rate: float, steps: int, name: str, note: str, seeded: bool = False
) -> dict:
    """The privacy contract's entry for a DP-SGD generator (``rdp`` on ``DEFAULT_ORDERS``); ``seeded``: noise or
    sampling from a recorded seed (NOT PRIVATE)."""
    return {
        "stage": "generator",
        "name": name,
        "reads_private_data": True,
        "dp": True,
        "rdp": {
            "orders": list(DEFAULT_ORDERS),
            "values": [float(v) for v in dp_sgd_rdp(noise_multiplier, sample_rate, steps)],
        },
        "note": note,
        "seeded": bool(seeded),
    }


def check_resume_noise(saved: dict, now: dict, steps: int) -> None:
    """Refuse a resume whose noise multiplier, sample rate or clip differ from the checkpoint's.

    The accountant composes ``steps`` at one setting; steps already taken at another would be charged at
    the new one (a resumed ``target_epsilon`` run re-solves sigma for its new plan and under-counts).

    >>> check_resume_noise({"noise_multiplier": 1.0}, {"noise_multiplier": 1.0}, 8)
    >>> check_resume_noise({"noise_multiplier": 0.889}, {"noise_multiplier": 1.16}, 16)
    Traceback (most recent call last):
    ...
    ValueError: DP-SGD resume refused: the checkpoint's 16 steps ran at noise_multiplier 0.889, this run would use 1.16; ...
    """
    changed = [f"{name} {saved[name]:.6g}, this run would use {now[name]:.6g}" for name in saved
               if name in now and not math.isclose(saved[name], now[name], rel_tol=1e-9)]
    if changed and steps > 0:
        raise ValueError(
            f"DP-SGD resume refused: the checkpoint's {steps} steps ran at {'; at '.join(changed)}; the accountant "
            "charges every step at one setting, so it would misstate epsilon (with target_epsilon, sigma is solved "
            "for the planned steps: change no max_epochs/max_steps, batch size, clip or target on a resume). Resume "
            "with the same settings, or delete the teacher group's checkpoint folder to train afresh."
        )
