"""How many PATE queries fit an end-to-end budget once a DP generator has spent part of it.

The end-to-end curve a record meets is, in RDP, its teacher's generator (DP-SGD; the max over teachers,
since shards are disjoint) plus Confident-GNMax's a-priori curve (every asked query charged in full) plus
the fixed-parameter smooth-sensitivity release (Theorem 23 at the default order of privacy.release_order): the same three entries
``pate-lightning pate`` composes in ``pate/report.json``. All three depend on public settings only, so the
number of queries is chosen before any vote is counted. Converted once, at delta 1e-5 (balle2020).

    python -m experiments.dp_route_budget --sigma 3.4 --sample_rate 0.25 --steps 40 --target 10
    python -m experiments.dp_route_budget --generator_report RUN/teacher_vaes/teacher_0/training_report.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Optional

import numpy as np

from pate_lightning.privacy import RDPAccountant, ReleaseSettings, analysis, release_rdp_curve
from pate_lightning.privacy.release_order import settings_for_run
from pate_lightning.privacy.dp_sgd_accounting import dp_sgd_rdp

DELTA = 1e-5
CGN = {"threshold": 200.0, "sigma1": 150.0, "sigma2": 40.0}  # Papernot et al. 2018's MNIST setting


def pate_curve(num_queries: int, parameters: dict[str, float] = CGN) -> np.ndarray:
    """Confident-GNMax's a-priori RDP for ``num_queries`` asked, plus the fixed release's cost, on DEFAULT_ORDERS."""
    accountant = RDPAccountant()
    # the a-priori curve charges every asked query; the answered mask only feeds the realised figure
    accountant.step(mechanism="confident_gnmax", num_queries=num_queries, answered=np.ones(num_queries, bool),
                    **parameters)
    # the default release order (privacy.release_order) for 250 teachers, 10 classes: settings only
    release = settings_for_run(ReleaseSettings(), "confident_gnmax", parameters, num_queries, 10, 250, DELTA)
    return accountant.rdp_data_independent + release_rdp_curve(release.beta, release.sigma_ss, accountant.orders)


def end_to_end_epsilon(generator_rdp: Optional[np.ndarray], num_queries: int, delta: float = DELTA) -> float:
    """Epsilon at ``delta`` of a DP generator (None: a public one) composed with ``num_queries`` PATE queries.

    >>> round(end_to_end_epsilon(None, 1500), 2)
    7.07
    """
    rdp = pate_curve(num_queries)
    if generator_rdp is not None:
        rdp = rdp + generator_rdp
    return analysis.rdp_to_dp(analysis.DEFAULT_ORDERS, rdp, delta, "balle2020")[0]


def max_queries(generator_rdp: Optional[np.ndarray], target: float, delta: float = DELTA, step: int = 50) -> int:
    """The largest multiple of ``step`` queries whose end-to-end epsilon stays <= ``target`` (0 if none fits)."""
    best, asked = 0, step
    while end_to_end_epsilon(generator_rdp, asked, delta) <= target:
        best, asked = asked, asked + step
    return best


def generator_curve(report: Optional[str], sigma: Optional[float], sample_rate: Optional[float],
                    steps: Optional[int]) -> Optional[np.ndarray]:
    """The DP generator's RDP on DEFAULT_ORDERS: from a training_report.json's privacy entry, or from its settings."""
    if report:
        entry = json.loads(Path(report).read_text())["privacy"]
        values = [np.inf if v is None else v for v in entry["rdp"]["values"]]
        return np.asarray(values, dtype=float)
    if sigma is None:
        return None
    return dp_sgd_rdp(sigma, sample_rate, steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generator_report", default=None, help="a DP teacher's training_report.json")
    parser.add_argument("--sigma", type=float, default=None)
    parser.add_argument("--sample_rate", type=float, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--target", type=float, default=10.0)
    args = parser.parse_args()
    curve = generator_curve(args.generator_report, args.sigma, args.sample_rate, args.steps)
    asked = max_queries(curve, args.target)
    generator_eps = None if curve is None else analysis.rdp_to_dp(analysis.DEFAULT_ORDERS, curve, DELTA, "balle2020")[0]
    print(json.dumps({"generator_epsilon": generator_eps, "target": args.target, "max_queries": asked,
                      "end_to_end_epsilon": end_to_end_epsilon(curve, asked) if asked else None}))


if __name__ == "__main__":
    main()
