"""The one exception type users see (a one-paragraph message naming the file and the problem), and
the one-paragraph text the CLI prints for every expected failure (bad files, settings, full disks)."""

from __future__ import annotations

import errno
import re
from pathlib import Path
from typing import Optional, Union


class PateError(Exception):
    """A user-facing error; the CLI prints its message (no traceback) and exits non-zero.

    Args:
        message: what is wrong and what to do about it.
        path: the file or folder the problem is in, named first in the message.
    """

    def __init__(self, message: str, path: Optional[Union[str, Path]] = None) -> None:
        self.path = None if path is None else Path(path)
        text = f"{self.path}: {message}" if self.path is not None else message
        super().__init__(" ".join(text.split()))


# jsonargparse reports a value no type of a Union accepts as one block per type; these lines are
# its framing, not the reason (which is the ValueError our own check raised)
_UNION_NOISE = ("expected a", "not a valid subclass", "a class path", "a dict", "does not validate",
                "given value", "subtypes", "problem with given class_path", "- a ")


def os_error_message(error: OSError) -> str:
    """One paragraph for a disk or permission failure, naming the path."""
    path = error.filename if error.filename is not None else "a file"
    reason = error.strerror or type(error).__name__
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        advice = ("The disk is full. Free space and run the same command again: finished work is kept "
                  "(every file is written whole or not at all) and the run continues where it stopped.")
    elif error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        advice = ("This folder cannot be written. Make it writable or choose another run folder (run_dir; "
                  "--data.run_dir for fit and predict); "
                  "nothing was changed (a run whose teachers are all done only reads its files).")
    elif error.errno == errno.ENOENT:
        advice = "Check the path."
    else:
        advice = "Fix the file system problem and run the same command again; finished work is kept."
    return " ".join(f"{path}: {reason}. {advice}".split())


def union_reason(text: str) -> str:
    """The one real reason in a jsonargparse "Union subtypes" dump, prefixed with the class it concerns.

    >>> union_reason("Does not validate against any of the Union subtypes\\nErrors:\\n  - pool_size must be >= 1\\n"
    ...              "  - Expected a <class 'NoneType'>\\nGiven value: Namespace(class_path='a.b.Data', x=1)")
    'invalid setting of Data: pool_size must be >= 1'
    """
    reasons = [line.strip()[2:] for line in text.splitlines() if line.strip().startswith("- ")]
    reasons = [r for r in reasons if not r.lower().startswith(_UNION_NOISE)]
    if not reasons:
        return text.splitlines()[0]
    owner = re.search(r"class_path='[\w.]*?(\w+)'", text)
    return f"invalid setting{f' of {owner.group(1)}' if owner else ''}: {reasons[0]}"


def user_message(error: BaseException) -> str:
    """What the CLI prints for an expected failure: one paragraph, no traceback."""
    if isinstance(error, OSError) and not isinstance(error, PateError):
        return os_error_message(error)
    text = str(error)
    if "Union subtypes" in text:
        text = union_reason(text)
    return " ".join(text.split())
