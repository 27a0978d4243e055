"""Every float setting must be a finite number: ``.nan`` or ``.inf`` parse as floats but train to NaN, turn
comparisons into no-ops (``x < nan`` is always false, so a NaN threshold silently disables its filter) and
end in reports that are not JSON. Checked once, on the parsed config of every command, before anything runs."""

from __future__ import annotations

from typing import Any

from jsonargparse import ArgumentParser

from pate_lightning.errors import OneParagraphParser
from pate_lightning.io import non_finite


def check_finite_settings(config: Any) -> None:
    """A ValueError naming every non-finite float setting of a parsed jsonargparse config (or plain dict)."""
    bad = non_finite(config.as_dict() if hasattr(config, "as_dict") else config)
    if bad:
        raise ValueError(f"settings must be finite numbers, got {', '.join(bad)}; give a finite value (not .nan or .inf).")


class FiniteSettingsParser(OneParagraphParser, ArgumentParser):
    """jsonargparse's parser for the plain commands and ``pipeline``, refusing non-finite float settings once
    parsed; a parse error is one paragraph naming the setting."""

    # checked when the parsed settings are put to use (not inside parse_args, whose errors print the usage)
    def instantiate(self, config: Any, *args: Any, **kwargs: Any) -> Any:
        check_finite_settings(config)
        return super().instantiate(config, *args, **kwargs)
