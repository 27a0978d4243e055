"""The smooth-sensitivity release's public parameters (Theorem 23): fixed before the votes, and what they cost.

``ReleaseSettings`` holds order, beta and sigma_ss with their data-independent defaults
(``balanced_sigma``); ``release_rdp_curve`` is the release's RDP at every order, a function of
these parameters alone. ``release`` makes the release itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from pate_lightning.privacy import analysis
from pate_lightning.privacy import smooth_sensitivity as ss
from pate_lightning.privacy.analysis import ArrayLike

BETA_FRACTION = 0.49  # beta = 0.49 / order, as rdp_cumulative.py; Theorem 23 needs beta < 0.5 / order


def check_beta(beta: float, order: float) -> float:
    """``beta`` as a float if Theorem 23 allows it at ``order`` (0 < beta < 1 / (2 order)); else a ValueError.

    >>> check_beta(0.03, 16.0)
    0.03
    """
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0 < beta < 1 / (2 * order):
        raise ValueError(f"beta must lie in (0, 1 / (2 order)) = (0, {1 / (2 * order):g}), got {beta!r}")
    return float(beta)


def balanced_sigma(order: float, beta: float) -> float:
    """sigma_ss making Theorem 23's two terms equal: order e^(2 beta) / sigma^2 = (beta order - log(1 - 2 order beta) / 2) / (order - 1).

    The default rule: a function of (order, beta) only, so it is fixed before the data. The reference's
    sigma_ss = (order e^(2 beta) / SS)^(1/3) needs SS, which depends on the votes.

    >>> round(balanced_sigma(16.0, 0.49 / 16), 3)
    10.214
    """
    order = ss._check_order(order)
    beta = check_beta(beta, order)
    second = (beta * order - 0.5 * math.log1p(-2 * order * beta)) / (order - 1)
    return math.sqrt(order * math.exp(2 * beta) / second)


def _check_sigma_ss(sigma_ss: float) -> None:
    if isinstance(sigma_ss, bool) or not isinstance(sigma_ss, (int, float)) or not 0 < sigma_ss < math.inf:
        raise ValueError(f"release.sigma_ss must be a finite number > 0 (or null for the rule), got {sigma_ss!r}")


@dataclass(frozen=True)
class ReleaseSettings:
    """Theorem 23's parameters, public and fixed before the votes are seen.

    Args:
        order: the Renyi order lambda of the released data-dependent RDP; None: the rule of
            ``release_order.default_release_order`` on the run's settings (no vote read; docs/privacy.md).
        beta: the smoothing parameter; None: ``BETA_FRACTION / order`` (the reference's rule).
        sigma_ss: the noise multiplier; None: ``balanced_sigma(order, beta)``.
    """

    order: Optional[float] = None
    beta: Optional[float] = None
    sigma_ss: Optional[float] = None

    def resolved(self) -> "ReleaseSettings":
        """The settings with the rule's defaults filled in, checked (a ValueError names the setting).

        >>> settings = ReleaseSettings(order=16.0).resolved()
        >>> settings.order, round(settings.beta, 6), round(settings.sigma_ss, 3)
        (16.0, 0.030625, 10.214)
        """
        if self.sigma_ss is not None:
            _check_sigma_ss(self.sigma_ss)
        if self.order is None:
            raise ValueError("release.order is null: the rule fills it from the run's settings "
                             "(release_order.settings_for_run); or give an order > 1")
        try:
            order = ss._check_order(self.order)
        except ValueError as error:
            raise ValueError(f"release.{error}") from None
        try:
            beta = check_beta(BETA_FRACTION / order if self.beta is None else self.beta, order)
        except ValueError as error:
            raise ValueError(f"release.{error}") from None
        sigma_ss = balanced_sigma(order, beta) if self.sigma_ss is None else self.sigma_ss
        return ReleaseSettings(order=order, beta=float(beta), sigma_ss=float(sigma_ss))


def release_rdp_curve(beta: float, sigma_ss: float, orders: ArrayLike) -> np.ndarray:
    """Theorem 23's RDP of the release at each order: finite below 1 / (2 beta), infinite (no bound) above.

    >>> release_rdp_curve(0.49 / 16, 10.0, [16.0, 17.0]).round(4)
    array([0.3332,    inf])
    """
    orders = analysis._check_orders(orders)
    limit = math.inf if beta == 0 else 1 / (2 * beta)
    return np.array([ss.rdp_smooth_sensitivity_gaussian(beta, sigma_ss, order) if order < limit else math.inf
                     for order in orders])
