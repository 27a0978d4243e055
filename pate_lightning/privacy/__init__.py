"""Noisy aggregation of teacher votes (LNMax, GNMax, Confident-GNMax) and its Rényi-DP accounting."""

from pate_lightning.privacy.accountant import NOT_RELEASED, RDPAccountant
from pate_lightning.privacy.aggregation import (
    UNANSWERED,
    ConfidentGNMaxResult,
    confident_gnmax,
    gnmax,
    lnmax,
    vote_counts,
)
from pate_lightning.privacy.analysis import (
    CONVERSION_REFERENCES,
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
from pate_lightning.privacy.ledger import PrivacyLedger, compose_parallel, compose_sequential, contract_entry
from pate_lightning.privacy.mechanisms import MECHANISMS, PARAMETERS
from pate_lightning.privacy.noise import NOT_PRIVATE, NoiseSource, noise_source
from pate_lightning.privacy.release import (
    RELEASED,
    RELEASED_MECHANISMS,
    SmoothSensitivityRelease,
    fixed_release,
    release_data_dependent_epsilon,
)
from pate_lightning.privacy.release_settings import ReleaseSettings, release_rdp_curve
from pate_lightning.privacy.scope import SCOPES, decide_scope, end_to_end_privacy

__all__ = [
    "CONVERSION_REFERENCES",
    "CONVERSIONS",
    "DEFAULT_ORDERS",
    "MECHANISMS",
    "NOT_PRIVATE",
    "NOT_RELEASED",
    "PARAMETERS",
    "RELEASED",
    "RELEASED_MECHANISMS",
    "UNANSWERED",
    "ConfidentGNMaxResult",
    "NoiseSource",
    "PrivacyLedger",
    "RDPAccountant",
    "ReleaseSettings",
    "SCOPES",
    "SmoothSensitivityRelease",
    "compose_parallel",
    "compose_sequential",
    "compute_logpr_answered",
    "compute_logq_gnmax",
    "compute_logq_lnmax",
    "confident_gnmax",
    "contract_entry",
    "decide_scope",
    "end_to_end_privacy",
    "fixed_release",
    "gnmax",
    "lnmax",
    "noise_source",
    "rdp_gnmax_data_dependent",
    "rdp_gnmax_data_independent",
    "rdp_lnmax_data_dependent",
    "rdp_lnmax_data_independent",
    "rdp_threshold_data_dependent",
    "rdp_threshold_data_independent",
    "rdp_to_dp",
    "release_data_dependent_epsilon",
    "release_rdp_curve",
    "vote_counts",
]
