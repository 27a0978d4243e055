"""The composed epsilon of a route's K replicate releases, by the package's own accountant and ledger.

Each replicate asks the same private records afresh (new noise, new student), so the K releases compose
sequentially: K times PATE's a-priori curve (the noisy votes, every asked query charged, and the
smooth-sensitivity release where made) or K times the DP-SGD curve. A generator stage runs once and is
reused by every replicate, so it is charged once. Every curve is a function of public parameters recorded
in the replicates' reports, so recomputing it here publishes nothing new.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from pate_lightning.privacy import PrivacyLedger, RDPAccountant, release_rdp_curve


def pate_curves(run: dict[str, Any], orders: np.ndarray) -> list[np.ndarray]:
    """One PATE run's a-priori RDP curves (votes, and the release where made) from its report entry."""
    accountant = RDPAccountant(orders)
    asked = int(run["queries_asked"])
    # the data-independent curve depends on the count only; the mask is what the accountant's API asks for
    extra = {"answered": np.zeros(asked, dtype=bool)} if run["mechanism"] == "confident_gnmax" else {}
    accountant.step(mechanism=run["mechanism"], num_queries=asked, **run["parameters"], **extra)
    curves = [accountant.rdp_data_independent]
    release = run["privacy"].get("release")
    if release:
        curves.append(release_rdp_curve(release["beta"], release["sigma_ss"], orders))
    return curves


def composed_epsilon(
    runs: Sequence[dict[str, Any]], generator_stages: Optional[Sequence[Any]], delta: float, conversion: str,
) -> Optional[float]:
    """Epsilon at ``delta`` of all replicates together over the route's scope; None where it is unbounded.

    ``runs``: the replicates' report entries (PATE's, or the DP-SGD baseline's with its ``ledger``);
    ``generator_stages``: the pool's privacy contract (charged once), None for public queries.
    """
    ledger = PrivacyLedger()
    if generator_stages:
        ledger.add_contract(generator_stages)
    for run in runs:
        if "mechanism" in run:
            for curve in pate_curves(run, ledger.orders):
                ledger.step(stage="pate", name=run["mechanism"], rdp=curve)
        else:
            ledger.add_contract(run["privacy"]["ledger"])
    return ledger.get_epsilon(delta, conversion)["epsilon"]
