"""A small stateful RDP accountant for PATE queries on top of the pure functions in ``analysis``."""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from pate_lightning.privacy import analysis
from pate_lightning.privacy.analysis import ArrayLike
from pate_lightning.privacy.mechanisms import check_given, check_threshold
NOT_RELEASED = (
    "The data-dependent epsilon is computed from the teachers' votes and is not itself privately released "
    "(no smooth-sensitivity analysis covers LNMax here), so only the data-independent epsilon is a "
    "differential-privacy guarantee."
)


def _as_array(values: Any, name: str, dtype: type) -> np.ndarray:
    if hasattr(values, "detach"):  # a torch tensor, possibly on an accelerator
        values = values.detach().cpu().numpy()
    try:
        return np.asarray(values, dtype=dtype)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be array-like of {dtype.__name__}, got {type(values).__name__}") from error


def _query_arrays(
    num_queries: Optional[int], votes: Optional[ArrayLike], answered: Optional[ArrayLike]
) -> tuple[Optional[np.ndarray], np.ndarray, int]:
    """Check that the arguments agree on the number of queries; ``answered`` defaults to all True."""
    counts = {}
    if num_queries is not None:
        if isinstance(num_queries, bool) or not isinstance(num_queries, int) or num_queries < 0:
            raise ValueError(f"num_queries must be a non-negative int, got {num_queries!r}")
        counts["num_queries"] = num_queries
    if votes is not None:
        votes = _as_array(votes, "votes", float)
        if votes.ndim != 2:
            raise ValueError(f"votes must have shape (queries, classes), got {votes.shape}")
        counts["votes"] = votes.shape[0]
    if answered is not None:
        raw = _as_array(answered, "answered", float)
        if raw.ndim != 1 or not np.isin(raw, (0, 1)).all():
            raise ValueError(f"answered must be a (queries,) bool mask, got {answered!r}")
        answered = raw.astype(bool)
        counts["answered"] = answered.shape[0]
    if not counts:
        raise ValueError("give num_queries or votes so the number of queries is known")
    if len(set(counts.values())) != 1:
        raise ValueError(f"the number of queries disagrees between arguments: {counts}")
    queries = next(iter(counts.values()))
    return votes, np.ones(queries, dtype=bool) if answered is None else answered, queries


class RDPAccountant:
    """Sums per-query RDP curves of LNMax, GNMax and Confident-GNMax over a grid of orders.

    The data-independent curve is a DP guarantee fixed before the run: Confident-GNMax pays its threshold
    check and GNMax(sigma2) on every query asked (Papernot et al. 2018 bound the answered queries only
    through a privacy-filter argument this package does not make). ``rdp_data_independent_answered`` charges
    GNMax on the answered queries only, and is reported beside it, labelled, never as the headline. The data-dependent curve (Papernot et al. 2018, Theorem 6;
    PATE 2017, Theorem 3) uses the votes where a step gives them and the data-independent cost where it does
    not, so it never exceeds the data-independent curve. The accountant does not release it privately (see
    ``NOT_RELEASED``); ``release.release_data_dependent_epsilon`` does, for GNMax and Confident-GNMax.

    Args:
        orders: Rényi orders (each > 1) at which the curves are kept.

    >>> accountant = RDPAccountant(orders=[2, 11])
    >>> accountant.step(mechanism="gnmax", sigma=40.0, num_queries=100)
    >>> accountant.rdp_data_independent
    array([0.125 , 0.6875])
    """

    def __init__(self, orders: Sequence[float] = analysis.DEFAULT_ORDERS) -> None:
        self._orders = analysis._check_orders(orders)
        self._rdp_independent = np.zeros_like(self._orders)
        self._rdp_answered = np.zeros_like(self._orders)
        self._rdp_dependent = np.zeros_like(self._orders)
        self.num_queries = 0
        self.num_answered = 0

    @property
    def orders(self) -> np.ndarray:
        return self._orders.copy()

    @property
    def rdp_data_independent(self) -> np.ndarray:
        return self._rdp_independent.copy()

    @property
    def rdp_data_independent_answered(self) -> np.ndarray:
        return self._rdp_answered.copy()

    @property
    def rdp_data_dependent(self) -> np.ndarray:
        return self._rdp_dependent.copy()

    def step(
        self,
        *,
        mechanism: str,
        num_queries: Optional[int] = None,
        votes: Optional[ArrayLike] = None,
        answered: Optional[ArrayLike] = None,
        gamma: Optional[float] = None,
        sigma: Optional[float] = None,
        threshold: Optional[float] = None,
        sigma1: Optional[float] = None,
        sigma2: Optional[float] = None,
    ) -> None:
        """Account for a batch of queries answered by ``mechanism``.

        Args:
            mechanism: one of ``MECHANISMS``.
            num_queries: how many queries; may be left out when ``votes`` or ``answered`` gives it.
            votes: (queries, classes) vote counts; enables the data-dependent bound.
            answered: (queries,) bool mask from Confident-GNMax; required for it, rejected otherwise.
            gamma: LNMax inverse Laplace scale. sigma: GNMax noise std.
            threshold, sigma1, sigma2: Confident-GNMax threshold, threshold-check noise and GNMax noise.
        """
        check_given(mechanism, {"gamma": gamma, "sigma": sigma, "threshold": threshold, "sigma1": sigma1,
                                "sigma2": sigma2})
        if (answered is None) == (mechanism == "confident_gnmax"):
            raise ValueError("answered (a bool mask per query) is required for 'confident_gnmax' and only for it")
        if threshold is not None:
            check_threshold(threshold)

        votes, answered, queries = _query_arrays(num_queries, votes, answered)
        orders = self._orders
        if mechanism == "lnmax":
            independent = queries * analysis.rdp_lnmax_data_independent(gamma, orders)
        elif mechanism == "gnmax":
            independent = queries * analysis.rdp_gnmax_data_independent(sigma, orders)
        else:  # the threshold check costs on every query; a priori, so may GNMax(sigma2)
            check = queries * analysis.rdp_threshold_data_independent(sigma1, orders)
            independent = check + queries * analysis.rdp_gnmax_data_independent(sigma2, orders)
            realised = check + int(answered.sum()) * analysis.rdp_gnmax_data_independent(sigma2, orders)
        if mechanism != "confident_gnmax":
            realised = independent

        dependent = realised if votes is None else np.zeros_like(orders)
        for row, is_answered in zip(votes if votes is not None else (), answered):
            if mechanism == "lnmax":
                dependent += analysis.rdp_lnmax_data_dependent(analysis.compute_logq_lnmax(row, gamma), gamma, orders)
            elif mechanism == "gnmax":
                dependent += analysis.rdp_gnmax_data_dependent(analysis.compute_logq_gnmax(row, sigma), sigma, orders)
            else:
                logpr = analysis.compute_logpr_answered(threshold, sigma1, row)
                dependent += analysis.rdp_threshold_data_dependent(logpr, sigma1, orders)
                if is_answered:
                    logq = analysis.compute_logq_gnmax(row, sigma2)
                    dependent += analysis.rdp_gnmax_data_dependent(logq, sigma2, orders)

        self._rdp_independent += independent
        self._rdp_answered += realised
        self._rdp_dependent += np.minimum(dependent, realised)  # equal to rounding when no query has a tighter bound
        self.num_queries += queries
        self.num_answered += int(answered.sum())

    def get_epsilon(self, delta: float, conversion: str = "balle2020") -> dict[str, Any]:
        """The epsilons at ``delta`` with their best orders, and the counts behind them.

        >>> accountant = RDPAccountant(orders=[2, 11])
        >>> accountant.step(mechanism="gnmax", sigma=40.0, votes=[[250, 0, 0]] * 100)
        >>> report = accountant.get_epsilon(1e-5, conversion="classic")
        >>> round(report["epsilon_data_independent"], 4), report["order_data_independent"]
        (1.8388, 11.0)
        >>> report["epsilon_data_dependent"] < 1.16, report["data_dependent_released"]
        (True, False)
        """
        eps_independent, order_independent = analysis.rdp_to_dp(self._orders, self._rdp_independent, delta, conversion)
        eps_answered, order_answered = analysis.rdp_to_dp(self._orders, self._rdp_answered, delta, conversion)
        eps_dependent, order_dependent = analysis.rdp_to_dp(self._orders, self._rdp_dependent, delta, conversion)
        return {
            "delta": delta,
            "conversion": conversion,
            "epsilon_data_independent": eps_independent,
            "order_data_independent": order_independent,
            "epsilon_data_independent_answered_only": eps_answered,
            "order_data_independent_answered_only": order_answered,
            "epsilon_data_dependent": eps_dependent,
            "order_data_dependent": order_dependent,
            "num_queries": self.num_queries,
            "num_answered": self.num_answered,
            "data_dependent_released": False,
            "note": NOT_RELEASED,
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "orders": self._orders.tolist(),
            "rdp_data_independent": self._rdp_independent.tolist(),
            "rdp_data_independent_answered": self._rdp_answered.tolist(),
            "rdp_data_dependent": self._rdp_dependent.tolist(),
            "num_queries": self.num_queries,
            "num_answered": self.num_answered,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        expected = {"orders", "rdp_data_independent", "rdp_data_independent_answered", "rdp_data_dependent",
                    "num_queries", "num_answered"}
        if not isinstance(state, dict) or set(state) != expected:
            raise ValueError(f"state must be a dict with keys {sorted(expected)}")
        orders = np.asarray(state["orders"], dtype=float)
        if orders.shape != self._orders.shape or not np.array_equal(orders, self._orders):
            raise ValueError("state was saved with other orders; build RDPAccountant(orders=state['orders']) first")
        independent = np.asarray(state["rdp_data_independent"], dtype=float)
        answered = np.asarray(state["rdp_data_independent_answered"], dtype=float)
        dependent = np.asarray(state["rdp_data_dependent"], dtype=float)
        if not independent.shape == answered.shape == dependent.shape == orders.shape:
            raise ValueError(f"state RDP curves must have one value per order ({orders.size})")
        self._rdp_independent, self._rdp_answered = independent.copy(), answered.copy()
        self._rdp_dependent = dependent.copy()
        self.num_queries, self.num_answered = int(state["num_queries"]), int(state["num_answered"])
