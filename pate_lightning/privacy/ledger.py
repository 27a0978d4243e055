"""The privacy ledger: every stage that reads private data adds an RDP curve, or says it is not DP.

Curves live on one grid of orders (``analysis.DEFAULT_ORDERS``); an order a stage gives no bound at is
infinite there. Per-teacher stages on disjoint shards compose in parallel (the max over teachers: each
record lives in one shard); the stages one record passes through (its teacher's generator, selection, the
votes, the release) compose sequentially (the sum). The total is converted to (epsilon, delta) once.
A stage that reads private data without DP makes the total unbounded, and the ledger says which one.

The entries follow the privacy contract between stages (``contract_entry``; docs/privacy.md):
{"stage", "name", "reads_private_data", "dp", "rdp": null | {"orders", "values"}, "note", "seeded"}.
``seeded`` (absent: false) says the stage drew its noise from a recorded seed: its epsilon is accounting
only, since anyone with the seed can undo the noise, and every run that uses it is NOT PRIVATE.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

from pate_lightning.privacy import analysis
from pate_lightning.privacy.analysis import ArrayLike

SCOPES = ("labels", "labels_only_queries_not_private", "end_to_end", "end_to_end_settings_tuned_on_private_data")


def align(orders: ArrayLike, values: ArrayLike, grid: ArrayLike) -> np.ndarray:
    """A curve given at ``orders`` read on ``grid``: infinite (no bound) at grid orders it lacks.

    >>> align([2, 4], [0.1, 0.3], [2, 3, 4])
    array([0.1, inf, 0.3])
    """
    orders, grid = analysis._check_orders(orders), analysis._check_orders(grid)
    values = np.asarray(values, dtype=float)
    if values.shape != orders.shape or np.any(np.isnan(values)) or np.any(values < 0):
        raise ValueError(f"an RDP curve needs one value >= 0 per order ({orders.size}), got {values.tolist()}")
    out = np.full(grid.shape, math.inf)
    for index, order in enumerate(grid):
        match = np.flatnonzero(np.isclose(orders, order, rtol=1e-12, atol=0))
        if match.size:
            out[index] = values[match[0]]
    return out


def compose_sequential(curves: Sequence[ArrayLike]) -> np.ndarray:
    """Mechanisms applied one after another to the same records: RDP adds up (Mironov 2017, Prop. 1).

    >>> compose_sequential([[0.1, 0.2], [0.3, np.inf]])
    array([0.4, inf])
    """
    return np.sum(np.asarray(curves, dtype=float), axis=0)


def compose_parallel(curves: Sequence[ArrayLike]) -> np.ndarray:
    """Mechanisms on disjoint shards (one per teacher): a record meets only one, so the max over them.

    >>> compose_parallel([[0.1, 0.5], [0.3, 0.2]])
    array([0.3, 0.5])
    """
    return np.max(np.asarray(curves, dtype=float), axis=0)


def contract_entry(
    *, stage: str, name: str, reads_private_data: bool, dp: bool, rdp: Optional[ArrayLike] = None,
    orders: ArrayLike = analysis.DEFAULT_ORDERS, note: str = "", seeded: bool = False,
) -> dict[str, Any]:
    """A JSON-ready entry of the privacy contract (infinite RDP written as null); ``seeded``: noise from a seed.

    >>> contract_entry(stage="generator", name="public", reads_private_data=False, dp=False, note="font prior")["rdp"]
    """
    curve = None
    if rdp is not None:
        values = np.asarray(rdp, dtype=float)
        curve = {"orders": [float(o) for o in orders], "values": [None if math.isinf(v) else float(v) for v in values]}
    return {"stage": stage, "name": name, "reads_private_data": bool(reads_private_data), "dp": bool(dp),
            "rdp": curve, "note": note, "seeded": bool(seeded)}


@dataclass(frozen=True)
class Entry:
    """One stage in the ledger: its RDP on the ledger's grid (None: no DP bound or nothing private read)."""

    stage: str
    name: str
    reads_private_data: bool
    dp: bool
    rdp: Optional[np.ndarray]
    note: str = ""
    seeded: bool = False

    @property
    def unbounded(self) -> bool:
        return self.reads_private_data and not self.dp

    def summary(self) -> dict[str, Any]:
        return {"stage": self.stage, "name": self.name, "reads_private_data": self.reads_private_data, "dp": self.dp,
                "note": self.note, "seeded": self.seeded}


def entry_from_contract(record: Any, grid: ArrayLike = analysis.DEFAULT_ORDERS) -> Entry:
    """Check one contract entry (a ValueError says what is wrong) and read its curve on ``grid``."""
    if not isinstance(record, dict):
        raise ValueError(f"a privacy stage entry must be a JSON object, got {record!r}")
    missing = [key for key in ("stage", "name", "reads_private_data", "dp") if key not in record]
    if missing:
        raise ValueError(f"privacy stage entry {record!r} lacks {missing}")
    reads, dp, seeded = record["reads_private_data"], record["dp"], record.get("seeded", False)
    if not isinstance(reads, bool) or not isinstance(dp, bool) or not isinstance(seeded, bool):
        raise ValueError(f"reads_private_data, dp and seeded must be true/false in {record!r}")
    rdp = record.get("rdp")
    curve = None
    if dp and reads:
        if not isinstance(rdp, dict) or "orders" not in rdp or "values" not in rdp:
            raise ValueError(f"stage {record['name']!r} says dp=true but has no rdp {{orders, values}}")
        values = [math.inf if value is None else value for value in rdp["values"]]
        curve = align(rdp["orders"], values, grid)
    return Entry(str(record["stage"]), str(record["name"]), reads, dp, curve, str(record.get("note", "")), seeded)


class PrivacyLedger:
    """Stages in the order a record meets them; composes them and converts once.

    Args:
        orders: the shared grid of Renyi orders (each > 1).

    >>> ledger = PrivacyLedger(orders=[2, 11])
    >>> ledger.step(stage="generator", name="dp_vae", rdp=[[0.1, 0.6], [0.2, 0.5]])  # two teachers: the max
    >>> ledger.step(stage="pate", name="gnmax", rdp=[0.05, 0.3])
    >>> ledger.rdp
    array([0.25, 0.9 ])
    >>> ledger.step(stage="selection", name="nn_distance", dp=False)
    >>> ledger.get_epsilon(1e-5)["epsilon"] is None, ledger.unbounded_by
    (True, ['selection:nn_distance'])
    """

    def __init__(self, orders: Sequence[float] = analysis.DEFAULT_ORDERS) -> None:
        self._orders = analysis._check_orders(orders)
        self._entries: list[Entry] = []

    @property
    def orders(self) -> np.ndarray:
        return self._orders.copy()

    @property
    def entries(self) -> list[Entry]:
        return list(self._entries)

    def step(
        self, *, stage: str, name: str, reads_private_data: bool = True, dp: bool = True,
        rdp: Optional[ArrayLike] = None, orders: Optional[ArrayLike] = None, note: str = "", seeded: bool = False,
    ) -> None:
        """Add a stage. ``rdp``: (orders,) for one mechanism, or (teachers, orders) for per-teacher mechanisms on
        disjoint shards (composed in parallel); ``orders`` when they are not the ledger's."""
        curve = None
        if reads_private_data and dp:
            if rdp is None:
                raise ValueError(f"stage {stage}:{name} is DP on private data, so it needs an rdp curve")
            values = np.asarray(rdp, dtype=float)
            if values.ndim == 2:
                values = compose_parallel(values)
            curve = align(self._orders if orders is None else orders, values, self._orders)
        elif rdp is not None:
            raise ValueError(f"stage {stage}:{name} has an rdp curve but is not DP on private data")
        self._entries.append(Entry(stage, name, bool(reads_private_data), bool(dp), curve, note, bool(seeded)))

    def add_contract(self, records: Sequence[Any]) -> None:
        """Add the entries of a ``{"stages": [...]}`` privacy record (each a ``contract_entry``)."""
        self._entries += [entry_from_contract(record, self._orders) for record in records]

    @property
    def unbounded_by(self) -> list[str]:
        return [f"{entry.stage}:{entry.name}" for entry in self._entries if entry.unbounded]

    @property
    def seeded_by(self) -> list[str]:
        """The stages whose noise came from a recorded seed: any one makes the whole run NOT PRIVATE."""
        return [f"{entry.stage}:{entry.name}" for entry in self._entries if entry.seeded]

    @property
    def rdp(self) -> np.ndarray:
        """The sequential composition of the DP entries (zero if there are none)."""
        curves = [entry.rdp for entry in self._entries if entry.rdp is not None]
        return compose_sequential(curves) if curves else np.zeros_like(self._orders)

    def get_epsilon(self, delta: float, conversion: str = "balle2020") -> dict[str, Any]:
        """Epsilon of everything in the ledger at ``delta``, or None with the stages that leave it unbounded."""
        result: dict[str, Any] = {"delta": delta, "conversion": conversion, "epsilon": None, "order": None,
                                  "unbounded_by": self.unbounded_by}
        if not result["unbounded_by"]:
            result["epsilon"], result["order"] = analysis.rdp_to_dp(self._orders, self.rdp, delta, conversion)
        return result

    def state_dict(self) -> dict[str, Any]:
        return {"orders": self._orders.tolist(),
                "entries": [contract_entry(**entry.summary(), rdp=entry.rdp, orders=self._orders) for entry in self._entries]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not isinstance(state, dict) or set(state) != {"orders", "entries"}:
            raise ValueError("state must be a dict with keys ['entries', 'orders']")
        orders = np.asarray(state["orders"], dtype=float)
        if orders.shape != self._orders.shape or not np.array_equal(orders, self._orders):
            raise ValueError("state was saved with other orders; build PrivacyLedger(orders=state['orders']) first")
        self._entries = [entry_from_contract(record, self._orders) for record in state["entries"]]
