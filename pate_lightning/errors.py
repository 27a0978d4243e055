"""The one exception type users see: a one-paragraph message naming the file and the problem."""

from __future__ import annotations

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
