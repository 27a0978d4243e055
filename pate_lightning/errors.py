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


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def parse_error_text(message: str, command: Optional[str] = None) -> str:
    """One paragraph for a jsonargparse parse error: the setting, the type it takes and the value it got
    (jsonargparse prints the usage and one block per type of every Union around the setting).

    >>> dump = ('Parser key "model":\\n  Does not validate against any of the Union subtypes\\n  Errors:\\n'
    ...         "    - Problem with given class_path 'a.b.DPModule':\\n        Parser key \\"noise_seed\\":\\n"
    ...         "          Errors:\\n            - Expected a <class 'int'>\\n            - Expected a <class 'NoneType'>\\n"
    ...         "          Given value: abc\\n    - Expected a <class 'NoneType'>\\n  Given value: NestedArg(key='noise_seed')")
    >>> parse_error_text(dump, "pate-lightning fit")
    "setting model.noise_seed: expected int or null, got 'abc'. Give a value of that type (pate-lightning fit --help lists every setting)."
    >>> parse_error_text("Parser key \\"model\\":\\n  - Problem with given class_path 'a.b.VAE':\\n      Option 'x' is not accepted")
    'setting model.x: not a setting of VAE. Check its spelling.'
    >>> parse_error_text('Parser key "config": File does not exist: \\'c.yaml\\'')
    "setting config: File does not exist: 'c.yaml'."
    """
    lines = message.splitlines()
    keys = [(i, m.group(1)) for i, line in enumerate(lines) if (m := re.search(r'Parser key "([^"]+)"', line))]
    if not keys:
        return f"{' '.join(message.split()).rstrip('.')}. Check the command line" + (
            f" ({command} --help lists every setting)." if command else ".")
    setting = ".".join(key for _, key in keys)
    start = keys[-1][0]
    # the innermost key's own lines: the rest of its header line, then those indented deeper than it
    block = [lines[start].split(f'"{keys[-1][1]}":', 1)[-1]]
    for line in lines[start + 1:]:
        if line.strip() and _indent(line) <= _indent(lines[start]):
            break
        block.append(line)
    text = "\n".join(block)
    unknown = re.search(r"Option '([^']+)' is not accepted", text)
    if unknown:
        owner = re.search(r"class_path '[\w.]*?(\w+)'", text)
        return f"setting {setting}.{unknown.group(1)}: not a setting of {owner.group(1) if owner else setting}. Check its spelling."
    expected = [name.rsplit(".", 1)[-1] for name in re.findall(r"Expected a <class '([\w.]+)'>", text)]
    given = re.search(r"(?:Given value|Got value): (.*)", text)
    if not expected:
        reason = union_reason(text) if "- " in text else " ".join(text.split())
        return f"setting {setting}: {reason.rstrip('.')}."
    types = " or ".join(dict.fromkeys("null" if name == "NoneType" else name for name in expected))
    got = f", got {given.group(1).strip()!r}" if given else ""
    advice = f" ({command} --help lists every setting)" if command else ""
    return f"setting {setting}: expected {types}{got}. Give a value of that type{advice}."


class OneParagraphParser:
    """Mixin for a jsonargparse parser: a parse error raises a PateError of one paragraph (the CLI exits 2),
    instead of printing the usage and every type of every Union around the setting."""

    def error(self, message: str, ex: Optional[Exception] = None) -> None:
        if not getattr(self, "exit_on_error", True):  # a parser whose caller handles the error
            return super().error(message, ex)  # type: ignore[misc]
        raise PateError(parse_error_text(message, getattr(self, "prog", None))) from None


def user_message(error: BaseException) -> str:
    """What the CLI prints for an expected failure: one paragraph, no traceback."""
    if isinstance(error, OSError) and not isinstance(error, PateError):
        return os_error_message(error)
    text = str(error)
    if "Union subtypes" in text:
        text = union_reason(text)
    return " ".join(text.split())
