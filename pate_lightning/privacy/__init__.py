"""Noisy aggregation of teacher votes (LNMax, GNMax, Confident-GNMax) and its Rényi-DP accounting."""

from pate_lightning.privacy.accountant import MECHANISMS, NOT_RELEASED, RDPAccountant
from pate_lightning.privacy.aggregation import (
    UNANSWERED,
    ConfidentGNMaxResult,
    confident_gnmax,
    gnmax,
    lnmax,
    vote_counts,
)
from pate_lightning.privacy.analysis import (
    CONVERSIONS,
    DEFAULT_ORDERS,
    compute_logpr_answered,
    compute_logq_gnmax,
    compute_logq_lnmax,
    rdp_gnmax_data_dependent,
    rdp_gnmax_data_independent,
    rdp_lnmax_data_dependent,
    rdp_lnmax_data_independent,
    rdp_threshold_data_dependent,
    rdp_threshold_data_independent,
    rdp_to_dp,
)
from pate_lightning.privacy.release import (
    RELEASED,
    RELEASED_MECHANISMS,
    SmoothSensitivityRelease,
    release_data_dependent_epsilon,
)

__all__ = [
    "CONVERSIONS",
    "DEFAULT_ORDERS",
    "MECHANISMS",
    "NOT_RELEASED",
    "RELEASED",
    "RELEASED_MECHANISMS",
    "UNANSWERED",
    "ConfidentGNMaxResult",
    "RDPAccountant",
    "SmoothSensitivityRelease",
    "compute_logpr_answered",
    "compute_logq_gnmax",
    "compute_logq_lnmax",
    "confident_gnmax",
    "gnmax",
    "lnmax",
    "rdp_gnmax_data_dependent",
    "rdp_gnmax_data_independent",
    "rdp_lnmax_data_dependent",
    "rdp_lnmax_data_independent",
    "rdp_threshold_data_dependent",
    "rdp_threshold_data_independent",
    "rdp_to_dp",
    "release_data_dependent_epsilon",
    "vote_counts",
]
