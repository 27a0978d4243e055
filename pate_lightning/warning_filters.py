"""Known third-party warning noise, filtered once at CLI start-up, and warnings shown without file prefixes.

Each filter names a warning that a correct run of this package raises every time, says nothing a
user can act on, and would otherwise repeat once per teacher group. Anything not listed here is
shown. ``--verbose`` keeps Python's default (every warning, with the file and line that raised it).
"""

from __future__ import annotations

import warnings

# (message regex, why it is noise here); any category, as Lightning raises some as its own subclasses
KNOWN_NOISE: tuple[tuple[str, str], ...] = (
    (r".*isinstance\(treespec, LeafSpec\)` is deprecated",
     "torch's pytree deprecation hit by Lightning's own code, not ours; it changes nothing we compute"),
    (r"`training_step` returned `None`",
     "the `public` family takes no step on a shard by design (TeacherVAEModule.training_step)"),
    (r"Total length of `.*` across ranks is zero",
     "a loader empty on purpose: the `public` family's, or the student's validation list at val_fraction 0"),
    (r"The number of training batches \(\d+\) is smaller than the logging interval",
     "a shard gives a few batches an epoch; the teachers' losses are logged per epoch, so no interval is missed"),
)


def short_format(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                 line: str | None = None) -> str:
    # a warning raised through Lightning's hooks points at lightning/pytorch/trainer/call.py, which
    # tells a user nothing: the message alone, as the CLI's own errors are shown
    return f"pate-lightning: warning: {message}\n"


def quiet_known_warnings(verbose: bool = False) -> None:
    """Ignore ``KNOWN_NOISE`` and show other warnings as one ``pate-lightning: warning: ...`` line (not with --verbose)."""
    if verbose:
        return
    for message, _why in KNOWN_NOISE:
        warnings.filterwarnings("ignore", message=message)
    warnings.formatwarning = short_format
