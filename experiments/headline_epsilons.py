"""How did the headline epsilons move from the old accounting to the new? Both from counts alone (no votes needed).

OLD: Confident-GNMax charged GNMax(sigma2) only on the answered queries, classic conversion (Mironov 2017).
NEW: the a-priori bound, every asked query charged in full, improved conversion (Balle et al. 2020, as
dp-accounting). Beside it, the labels' epsilon with the cost of the fixed-parameter smooth-sensitivity release
(Theorem 23 at the default order of ``privacy.release_order`` for the row's settings, beta 0.49/order, sigma_ss
by the balancing rule), which depends only on those public parameters. All at delta 1e-5 over
``analysis.DEFAULT_ORDERS``.

    python -m experiments.headline_epsilons --out docs/headline_epsilons.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Optional

import numpy as np

from pate_lightning.privacy import RDPAccountant, ReleaseSettings, analysis, release_rdp_curve
from pate_lightning.privacy.release_order import settings_for_run
from pate_lightning.privacy.scope import SCOPE_NOTES

DELTA = 1e-5
NUM_TEACHERS, NUM_CLASSES = 250, 10
CGN = {"threshold": 200.0, "sigma1": 150.0, "sigma2": 40.0}
# (row, query source, mechanism, parameters, asked, answered, scope): the README's headline settings, 250 teachers
ROWS = [
    ("mnist_test, 600 asked", "mnist_test", "confident_gnmax", CGN, 600, 359, "labels"),
    ("mnist_test, 5,000 asked", "mnist_test", "confident_gnmax", CGN, 5000, 2890, "labels"),
    ("synthetic, all 4,015 pooled", "synthetic", "confident_gnmax", CGN, 4015, 2461, "labels_only_queries_not_private"),
    ("PATE 2017 setting, 100 queries", "mnist_test", "lnmax", {"gamma": 0.05}, 100, 100, "labels"),
]


def curves(mechanism: str, parameters: dict[str, float], asked: int, answered: int) -> RDPAccountant:
    accountant = RDPAccountant()
    mask = {"answered": np.arange(asked) < answered} if mechanism == "confident_gnmax" else {}
    accountant.step(mechanism=mechanism, num_queries=asked, **parameters, **mask)
    return accountant


def row(name: str, source: str, mechanism: str, parameters: dict[str, float], asked: int, answered: int,
        scope: str) -> dict[str, Any]:
    accountant = curves(mechanism, parameters, asked, answered)
    orders = accountant.orders

    def eps(rdp: np.ndarray, conversion: str) -> float:
        return round(analysis.rdp_to_dp(orders, rdp, DELTA, conversion)[0], 4)

    realised, a_priori = accountant.rdp_data_independent_answered, accountant.rdp_data_independent
    labels: Optional[float] = None
    release_order: Optional[float] = None
    if mechanism in ("gnmax", "confident_gnmax"):
        release = settings_for_run(ReleaseSettings(), mechanism, parameters, asked, NUM_CLASSES, NUM_TEACHERS, DELTA)
        release_order = release.order
        labels = eps(a_priori + release_rdp_curve(release.beta, release.sigma_ss, orders), "balle2020")
    return {
        "row": name, "query_source": source, "mechanism": mechanism, "parameters": parameters,
        "asked": asked, "answered": answered,
        "old_realised_classic": eps(realised, "classic"),
        "realised_balle2020": eps(realised, "balle2020"),
        "a_priori_classic": eps(a_priori, "classic"),
        "new_a_priori_balle2020": eps(a_priori, "balle2020"),
        "new_labels_with_release_cost": labels,
        "release_order": release_order,
        "privacy_scope": scope,
        "end_to_end": "as eps labels" if scope == "labels" else "unbounded (non-DP generators and selection)",
    }


def table(rows: list[dict[str, Any]]) -> str:
    header = ("row", "asked", "answered", "OLD realised+classic", "realised+balle", "a priori+classic",
              "NEW a priori+balle", "NEW labels (+release)", "scope")
    cells = [header] + [(r["row"], str(r["asked"]), str(r["answered"]), f"{r['old_realised_classic']:.2f}",
                         f"{r['realised_balle2020']:.2f}", f"{r['a_priori_classic']:.2f}",
                         f"{r['new_a_priori_balle2020']:.2f}",
                         "-" if r["new_labels_with_release_cost"] is None else f"{r['new_labels_with_release_cost']:.2f}",
                         r["privacy_scope"]) for r in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in cells)


def main(argv: Optional[list[str]] = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    args = parser.parse_args(argv)
    rows = [row(*settings) for settings in ROWS]
    result = {
        "delta": DELTA, "orders": "pate_lightning.privacy.analysis.DEFAULT_ORDERS",
        "release": "privacy.release_order: each row's default order, beta 0.49 / order, sigma_ss balanced",
        "conversions": analysis.CONVERSION_REFERENCES,
        "scopes": SCOPE_NOTES, "rows": rows,
        "command": "python -m experiments.headline_epsilons --out docs/headline_epsilons.json",
    }
    print(table(rows))
    if args.out is not None:
        from pate_lightning.io import write_json

        write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
