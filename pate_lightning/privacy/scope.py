"""What a PATE epsilon covers (its ``privacy_scope``) and the end-to-end epsilon, from the stages' privacy records.

``labels``: the queries are public (``mnist_test``): standard PATE; the epsilon covers the labels and the
student, which is post-processing of public images and private labels.
``labels_only_queries_not_private``: the queries are synthetic and some stage that made them read private
data without DP (or left no privacy record): the epsilon covers the labels given the queries, and the
queries themselves leak; the student's end-to-end epsilon is unbounded.
``end_to_end``: every stage that read private data is DP; the ledger composes them with the votes.
``end_to_end_settings_tuned_on_private_data``: as ``end_to_end``, but the run declares
(``settings_chosen_on_private_data``) that some of its settings were chosen by a non-DP look at private data;
that look is outside the ledger, so the epsilon holds for the settings as given, not for the choice, and the
run never counts as ``end_to_end``.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from pate_lightning.privacy import analysis
from pate_lightning.privacy.ledger import SCOPES, PrivacyLedger, entry_from_contract

PUBLIC_QUERY_SOURCES = ("mnist_test",)
SCOPE_NOTES = {
    "labels": "public queries: the epsilon covers the noisy labels and the student trained on them (standard PATE)",
    "labels_only_queries_not_private": (
        "the synthetic queries are non-private functions of the teachers' shards: the epsilon covers the labels "
        "only, given queries that leak; there is no end-to-end guarantee for the student until every stage that "
        "reads private data is DP"
    ),
    "end_to_end": "every stage that reads private data is DP; generators, votes and release are composed",
    "end_to_end_settings_tuned_on_private_data": (
        "every stage that reads private data is DP and composed, but settings of the run were chosen by a non-DP "
        "look at private data, which no epsilon covers: not an end-to-end guarantee"
    ),
}
NO_RECORD = "no privacy record (a run before the privacy contract): treated as reading private data without DP"


def decide_scope(
    query_source: str, stages: Optional[Sequence[Any]], settings_chosen_on_private_data: Optional[str] = None,
) -> tuple[str, str]:
    """The scope and the reason for it; ``stages`` is the combined metadata's ``privacy.stages`` (None: missing).

    ``settings_chosen_on_private_data``: the run's declaration of which settings were tuned on private data
    and how (None: none were); it turns ``end_to_end`` into ``end_to_end_settings_tuned_on_private_data``.

    >>> decide_scope("mnist_test", None)[0]
    'labels'
    >>> decide_scope("synthetic", None)[0]
    'labels_only_queries_not_private'
    >>> decide_scope("synthetic", [{"stage": "generator", "name": "public", "reads_private_data": False, "dp": False}])
    ('end_to_end', 'every stage that reads private data is DP; generators, votes and release are composed')
    """
    if query_source in PUBLIC_QUERY_SOURCES:
        return "labels", SCOPE_NOTES["labels"]
    if stages is None:
        return "labels_only_queries_not_private", f"{SCOPE_NOTES['labels_only_queries_not_private']} ({NO_RECORD})"
    leaking = [f"{entry.stage}:{entry.name}" for entry in map(entry_from_contract, stages) if entry.unbounded]
    if leaking:
        why = f"stages reading private data without DP: {', '.join(leaking)}"
        return "labels_only_queries_not_private", f"{SCOPE_NOTES['labels_only_queries_not_private']} ({why})"
    if settings_chosen_on_private_data:
        scope = "end_to_end_settings_tuned_on_private_data"
        return scope, f"{SCOPE_NOTES[scope]} ({settings_chosen_on_private_data})"
    return "end_to_end", SCOPE_NOTES["end_to_end"]


def end_to_end_privacy(
    query_source: str, stages: Optional[Sequence[Any]], pate_steps: Sequence[dict[str, Any]], delta: float,
    conversion: str = "balle2020", orders: Sequence[float] = analysis.DEFAULT_ORDERS,
    settings_chosen_on_private_data: Optional[str] = None,
) -> dict[str, Any]:
    """The scope, the labels' epsilon (PATE's steps only) and the end-to-end epsilon (None where unbounded).

    Args:
        query_source: where the queries came from (``mnist_test`` is public).
        stages: the combined synthetic metadata's ``privacy.stages`` (None: missing; ignored for public queries).
        pate_steps: keyword arguments of ``PrivacyLedger.step`` for PATE's own entries (votes, release).
        delta, conversion: as in ``analysis.rdp_to_dp``.
        settings_chosen_on_private_data: the run's declaration (``decide_scope``); None: no setting was tuned
            on private data.

    >>> steps = [{"stage": "pate", "name": "gnmax", "rdp": [0.1, 0.2]}]
    >>> result = end_to_end_privacy("synthetic", None, steps, 1e-5, orders=[2, 3])
    >>> result["privacy_scope"], result["epsilon_end_to_end"], result["epsilon_labels"] > 0
    ('labels_only_queries_not_private', None, True)
    """
    scope, note = decide_scope(query_source, stages, settings_chosen_on_private_data)
    labels = PrivacyLedger(orders)
    for step in pate_steps:
        labels.step(**step)
    whole = PrivacyLedger(orders)
    if scope != "labels":
        if stages is None:
            whole.step(stage="synthetic", name="unrecorded", dp=False, note=NO_RECORD)
        else:
            whole.add_contract(stages)
    for step in pate_steps:
        whole.step(**step)
    label_eps, total = labels.get_epsilon(delta, conversion), whole.get_epsilon(delta, conversion)
    return {
        "privacy_scope": scope,
        "scope_note": note,
        "epsilon_labels": label_eps["epsilon"],
        "order_labels": label_eps["order"],
        "epsilon_end_to_end": total["epsilon"],
        "order_end_to_end": total["order"],
        "unbounded_by": total["unbounded_by"],
        "seeded_by": whole.seeded_by,
        "settings_chosen_on_private_data": settings_chosen_on_private_data,
        "ledger": [entry.summary() for entry in whole.entries],
    }


__all__ = ["PUBLIC_QUERY_SOURCES", "SCOPES", "SCOPE_NOTES", "decide_scope", "end_to_end_privacy"]
