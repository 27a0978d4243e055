"""What a PATE run may publish (``pate/report.json``) and what it may not (``private/pate_diagnostics.json``).

The report holds the mechanism and its public parameters, counts of queries asked and answered, the noisy
labels' class counts and accuracy against public truth, epsilons that are functions of public parameters
and DP outputs (data-independent, the ledger's totals, the one noisy release draw), the scope, and the
student's accuracy on the public test half. Everything computed from the un-noised votes (the plain
data-dependent epsilon, smooth sensitivities, the plurality's accuracy, agreement with the generating
teachers' own labels) goes to the diagnostics, marked not for release. The allow-lists below are checked
on every write, so a new field cannot leak into the report unnoticed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from pate_lightning.errors import PateError
from pate_lightning.io import read_json, sha256_file
from pate_lightning.privacy.ledger import entry_from_contract

RUN_KEYS = frozenset({
    "query_source", "protocol", "student_method", "query_file", "mechanism", "parameters", "mechanism_description", "num_teachers", "teacher_ids",
    "queries_available", "queries_asked", "queries_answered", "answered_label_counts", "label_accuracy",
    "sampling_seed", "privacy", "votes", "student", "seconds",
})
PRIVACY_KEYS = frozenset({
    # how the noise was made (private: OS entropy; else the seed and a NOT PRIVATE note)
    "private", "noise_seed", "noise_seed_note",
    # the accounting: public parameters, counts, data-independent epsilons, the release
    "accountant", "delta", "conversion", "conversion_reference", "num_queries", "num_answered",
    "epsilon_data_independent", "order_data_independent", "epsilon_data_independent_answered_only",
    "answered_only_note", "data_dependent_released", "epsilon_data_dependent_released", "release", "release_refused", "note",
    # the ledger: scope and composed epsilons
    "privacy_scope", "scope_note", "epsilon_labels", "order_labels", "epsilon_end_to_end", "order_end_to_end",
    "unbounded_by", "seeded_by", "settings_chosen_on_private_data", "ledger",
})
# one report entry per setting: a run with the same values of these replaces the earlier one
RUN_KEY = ("query_source", "mechanism_description", "queries_asked", "num_teachers", "teacher_ids", "protocol",
           "student_method")
RELEASE_KEYS = frozenset({"order", "beta", "sigma_ss", "rdp_release", "delta", "conversion"})
DIAGNOSTIC_NOTE = (
    "NOT FOR RELEASE: every value here is computed from the un-noised teacher votes (or from labels that "
    "non-private stages produced) without privacy noise. Use it to debug and to study the mechanisms; "
    "publishing it voids the privacy guarantee of pate/report.json."
)


def check_publishable(run: dict[str, Any]) -> dict[str, Any]:
    """Raise if ``run`` (or its privacy or release block) holds a key outside the allow-lists."""
    privacy = run.get("privacy") or {}
    release = privacy.get("release") or {}
    extra = sorted(set(run) - RUN_KEYS) + sorted(set(privacy) - PRIVACY_KEYS) + sorted(set(release) - RELEASE_KEYS)
    if extra:
        raise ValueError(f"refusing to publish keys outside the report's allow-list: {extra}; "
                         "values from un-noised votes belong in diagnostics.json")
    return run


def metadata_path(samples_path: Path) -> Path:
    """``{name}_metadata.json`` beside ``{name}_samples.pt`` (as ``combine`` writes them)."""
    name = samples_path.name
    stem = name[: -len("_samples.pt")] if name.endswith("_samples.pt") else samples_path.stem
    return samples_path.with_name(f"{stem}_metadata.json")


def read_privacy_stages(samples_path: Path) -> Optional[list[Any]]:
    """The combined metadata's ``privacy.stages``; None where the file or its ``privacy`` record is missing.

    A missing record means the data predates the privacy contract: treated as not private. A record that
    is there but malformed is an error naming the file.
    """
    path = metadata_path(Path(samples_path))
    if not path.is_file():
        return None
    metadata = read_json(path)
    if not isinstance(metadata, dict) or "privacy" not in metadata:
        return None
    stages = metadata["privacy"].get("stages") if isinstance(metadata["privacy"], dict) else None
    if not isinstance(stages, list):
        raise PateError('has a "privacy" record without a "stages" list; rerun `pate-lightning combine`.', path)
    for stage in stages:
        try:
            entry_from_contract(stage)
        except ValueError as error:
            raise PateError(f"privacy.stages: {error}; rerun `pate-lightning combine`.", path) from None
    check_samples_hash(metadata, Path(samples_path), path)
    return stages


def check_samples_hash(metadata: dict[str, Any], samples_path: Path, path: Path) -> None:
    """The metadata vouches only for the samples it recorded: an interrupted combine or a replaced file is an error."""
    outputs = metadata.get("outputs")
    samples = outputs.get("samples") if isinstance(outputs, dict) else None
    recorded = samples.get("sha256") if isinstance(samples, dict) else None
    if recorded != sha256_file(samples_path):
        raise PateError(
            f"does not describe {samples_path.name}: its recorded sha256 of the samples is {recorded}, the file's "
            "is another (a combine interrupted or samples replaced), so its privacy record cannot vouch for them. "
            "Rerun `pate-lightning combine`.", path,
        )


def privacy_record(
    noise_fields: dict[str, Any], accounting_public: dict[str, Any], ledger: dict[str, Any]
) -> dict[str, Any]:
    """The report's ``privacy`` block: how the noise was made, the accounting, the ledger's scope and totals.

    A stage before the votes whose noise came from a seed (``ledger["seeded_by"]``) makes the run not private,
    whatever the vote noise: ``private`` is false and the note names the stage.
    """
    seeded = ledger.get("seeded_by") or []
    if not seeded:
        return {**noise_fields, **accounting_public, **ledger}
    stages = ", ".join(seeded)
    note = (f"Stage {stages} drew its noise from a recorded seed: anyone with it can undo that noise, so this "
            f"run is reproducible and NOT private. " + (noise_fields["noise_seed_note"] if not noise_fields["private"] else ""))
    return {**noise_fields, "private": False, "noise_seed_note": note.strip(), **accounting_public, **ledger}


def diagnostics_entry(
    run: dict[str, Any], accounting_diagnostics: dict[str, Any], plurality_accuracy: Optional[float],
    generator_label_agreement: Optional[float],
) -> dict[str, Any]:
    """One run's diagnostics, keyed like its report entry so the two can be joined."""
    return {
        **{name: run.get(name) for name in RUN_KEY},
        "not_for_release": True,
        "plurality_accuracy": plurality_accuracy,
        "generator_label_agreement": generator_label_agreement,
        **accounting_diagnostics,
    }
