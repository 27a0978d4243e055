"""The PATE mechanisms, the parameters each takes and their checks: the one schema that the accountant
(``privacy/accountant.py``) and the aggregation settings (``pate/aggregate.py``) both read."""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional

MECHANISMS = ("lnmax", "gnmax", "confident_gnmax")
PARAMETERS = {"lnmax": ("gamma",), "gnmax": ("sigma",), "confident_gnmax": ("threshold", "sigma1", "sigma2")}


def check_mechanism(name: str) -> str:
    """``name`` if it is one of ``MECHANISMS``.

    >>> check_mechanism("laplace")
    Traceback (most recent call last):
    ...
    ValueError: unknown mechanism 'laplace'; choose one of ('lnmax', 'gnmax', 'confident_gnmax')
    """
    if name not in MECHANISMS:
        raise ValueError(f"unknown mechanism {name!r}; choose one of {MECHANISMS}")
    return name


def check_given(mechanism: str, given: Mapping[str, Optional[Any]]) -> tuple[str, ...]:
    """The parameters ``mechanism`` takes, if ``given`` (name -> value or None) sets exactly those.

    >>> check_given("gnmax", {"gamma": None, "sigma": 40.0})
    ('sigma',)
    >>> check_given("gnmax", {"gamma": 0.05, "sigma": None})
    Traceback (most recent call last):
    ...
    ValueError: mechanism 'gnmax' takes exactly ('sigma',); missing ['sigma'], unexpected ['gamma']
    """
    needed = PARAMETERS[check_mechanism(mechanism)]
    missing = [name for name in needed if given.get(name) is None]
    extra = [name for name, value in given.items() if value is not None and name not in needed]
    if missing or extra:
        raise ValueError(f"mechanism {mechanism!r} takes exactly {needed}; missing {missing}, unexpected {extra}")
    return needed


def check_threshold(value: float, num_teachers: Optional[int] = None) -> float:
    """Confident-GNMax's threshold T: finite, >= 0 and (when ``num_teachers`` is known) reachable.

    >>> check_threshold(200, num_teachers=250)
    200
    >>> check_threshold(-1.0)
    Traceback (most recent call last):
    ...
    ValueError: threshold must be a finite number >= 0, got -1.0
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
        raise ValueError(f"threshold must be a finite number >= 0, got {value!r}")
    if num_teachers is not None and value > num_teachers:
        raise ValueError(f"threshold={value:g} exceeds the {num_teachers} teachers voting: no query could "
                         "pass the check; lower threshold or use more teachers")
    return value


def check_positive(name: str, value: float) -> float:
    """A noise scale (gamma, sigma, sigma1, sigma2): a finite number > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return value


def check_parameters(mechanism: str, values: Mapping[str, float], num_teachers: Optional[int] = None) -> None:
    """Range-check the parameters ``mechanism`` takes (others in ``values`` are ignored).

    >>> check_parameters("lnmax", {"gamma": 0.0, "sigma": 40.0})
    Traceback (most recent call last):
    ...
    ValueError: gamma must be a finite number > 0, got 0.0
    """
    for parameter in PARAMETERS[check_mechanism(mechanism)]:
        if parameter == "threshold":
            check_threshold(values[parameter], num_teachers)
        else:
            check_positive(parameter, values[parameter])
