"""The default order of the smooth-sensitivity release: a rule on the run's settings, never on a vote.

Theorem 23 needs the order lambda fixed before the votes are seen. The rule: among the orders of
``analysis.DEFAULT_ORDERS`` where the release is valid (conditions C5/C6, ``release_conditions``), take the one
at which the released epsilon would be smallest if every teacher agreed on every asked query: Q times the
data-dependent RDP of one unanimous query (Confident-GNMax: its threshold check and GNMax) plus the release's
Theorem 23 cost at (lambda, beta(lambda), sigma_ss(lambda)), converted at lambda with the run's delta and
conversion. Unanimity is the most the data-dependent analysis can gain, so this is the order where the
release can pay off; every input is a setting known before voting (the mechanism and its parameters, the
number of queries asked, of classes and of teachers, delta, the conversion). Ties go to the smaller order;
where no order is valid the minimiser over every order is taken and the release is refused there.

Minimising the a-priori epsilon_labels instead is degenerate: the release's cost falls as lambda grows, so it
picks the grid's largest order, where the data-dependent figure is no better than the data-independent one.
An explicit ``release.order`` overrides the rule, fixed before the votes.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from pate_lightning.privacy import analysis
from pate_lightning.privacy import smooth_sensitivity as ss
from pate_lightning.privacy.release_conditions import gnmax_sigma, release_refusal, unanimous_votes
from pate_lightning.privacy.release_settings import ReleaseSettings

ORDER_RULE = ("the order minimising the released epsilon at unanimous votes on every asked query (data-dependent RDP "
              "+ the release's Theorem 23 cost, at the run's delta and conversion) among the orders where conditions "
              "C5/C6 hold; a function of settings only")


def unanimous_rdp(mechanism: str, parameters: dict[str, float], num_classes: int, num_teachers: int,
                  order: float) -> float:
    """The data-dependent RDP at ``order`` of one query on which all ``num_teachers`` agree (a public histogram).

    >>> 0 < unanimous_rdp("gnmax", {"sigma": 40.0}, 10, 250, 16.0) < 16.0 / 40.0 ** 2
    True
    """
    unanimous = unanimous_votes(num_classes, num_teachers)
    sigma = gnmax_sigma(mechanism, parameters)
    rdp = float(ss.rdp_gnmax_smooth(analysis.compute_logq_gnmax(unanimous, sigma), sigma, order)[0])
    if mechanism == "confident_gnmax":
        logpr = analysis.compute_logpr_answered(parameters["threshold"], parameters["sigma1"], unanimous)
        rdp += float(analysis.rdp_threshold_data_dependent(logpr, parameters["sigma1"], [order])[0])
    return rdp


@functools.lru_cache(maxsize=64)
def _rule(mechanism: str, parameters: tuple[tuple[str, float], ...], num_queries: int, num_classes: int,
          num_teachers: int, delta: float, conversion: str, beta, sigma_ss) -> float:
    orders = np.asarray(analysis.DEFAULT_ORDERS)
    given = dict(parameters)
    scored, refused = [], None
    for order in orders[orders > 1]:
        try:
            settings = ReleaseSettings(order=float(order), beta=beta, sigma_ss=sigma_ss).resolved()
        except ValueError as error:  # an explicit beta too large for this order, or a bad sigma_ss
            refused = error
            continue
        rdp = (num_queries * unanimous_rdp(mechanism, given, num_classes, num_teachers, settings.order)
               + ss.rdp_smooth_sensitivity_gaussian(settings.beta, settings.sigma_ss, settings.order))
        scored.append((analysis.rdp_to_dp([settings.order], [rdp], delta, conversion)[0], settings.order))
    if not scored:
        raise refused
    scored.sort()
    for _, order in scored:
        if release_refusal(mechanism, given, num_classes, num_teachers, order) is None:
            return order
    return scored[0][1]


def default_release_order(
    mechanism: str, parameters: dict[str, float], num_queries: int, num_classes: int, num_teachers: int,
    delta: float, conversion: str = "balle2020", settings: ReleaseSettings = ReleaseSettings(),
) -> float:
    """The rule's order (module docstring) for ``mechanism`` with ``parameters``; reads no vote.

    >>> default_release_order("confident_gnmax", {"threshold": 200.0, "sigma1": 150.0, "sigma2": 40.0},
    ...                       2600, 10, 250, 1e-5)
    15.0
    """
    return _rule(mechanism, tuple(sorted((k, float(v)) for k, v in parameters.items())), int(num_queries),
                 int(num_classes), int(num_teachers), float(delta), conversion, settings.beta, settings.sigma_ss)


def settings_for_run(
    settings: ReleaseSettings, mechanism: str, parameters: dict[str, float], num_queries: int, num_classes: int,
    num_teachers: int, delta: float, conversion: str = "balle2020",
) -> ReleaseSettings:
    """``settings`` resolved, its order (where null) from ``default_release_order``: fixed before the votes."""
    if settings.order is None:
        order = default_release_order(mechanism, parameters, num_queries, num_classes, num_teachers, delta,
                                      conversion, settings)
        settings = dataclasses.replace(settings, order=order)
    return settings.resolved()


__all__ = ["ORDER_RULE", "default_release_order", "settings_for_run", "unanimous_rdp"]
