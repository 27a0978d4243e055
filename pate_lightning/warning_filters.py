"""Known third-party warning noise, filtered once at CLI start-up, and warnings shown without file prefixes.
A TensorBoard writer thread's OSError (a full disk) is not printed by the thread: its writer raises it
again in the main thread, which ends the run in one paragraph.

Each filter names a warning that a correct run of this package raises every time, says nothing a
user can act on, and would otherwise repeat once per teacher group. Anything not listed here is
shown. ``--verbose`` keeps Python's default (every warning, with the file and line that raised it).
"""

from __future__ import annotations

import threading
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
    quiet_thread_os_errors()


def quiet_thread_os_errors() -> None:
    """A thread ending in an OSError prints no traceback (other exceptions still do).

    TensorBoard's writer thread re-raises a failed write (a full disk) and prints its traceback, while
    the writer stores the error and raises it again at the next call from the main thread; that one
    ends the run in the CLI's one paragraph naming the log folder (``stacked/export.py``).
    """
    shown = threading.excepthook
    if getattr(shown, "quiet_os_errors", False):
        return

    def hook(args: threading.ExceptHookArgs) -> None:
        if not issubclass(args.exc_type, OSError):
            shown(args)

    hook.quiet_os_errors = True  # type: ignore[attr-defined]
    threading.excepthook = hook
