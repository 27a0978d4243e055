"""``make clean-outputs`` removes exactly the top-level outputs ``layout`` names for the default run dir."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from pate_lightning import layout
from tests.conftest import REPO

# an example value for each required argument of a layout function that takes run_dir first
EXAMPLES = {"teacher_id": 0, "teacher_ids": [0, 1], "stage": "fit", "query_source": "mnist_test", "name": "votes"}


def layout_outputs(run_dir: Path) -> dict[str, str]:
    """Top-level entry under ``run_dir`` -> one layout function whose path lies in it."""
    outputs = {}
    for name, function in inspect.getmembers(layout, inspect.isfunction):
        parameters = list(inspect.signature(function).parameters.values())
        if name == "resolve_dir" or not parameters or parameters[0].name != "run_dir":
            continue  # resolve_dir resolves a setting; it names no output
        arguments = {p.name: EXAMPLES[p.name] for p in parameters[1:] if p.default is inspect.Parameter.empty}
        path = function(run_dir, **arguments)
        outputs.setdefault(path.relative_to(run_dir).parts[0], name)
    return outputs


def clean_outputs_targets() -> set[str]:
    """The paths the Makefile's clean-outputs recipe removes, ``folder/*`` read as ``folder``."""
    text = (REPO / "Makefile").read_text().replace("\\\n", " ")
    recipe = re.search(r"^clean-outputs:\n\t(.+)$", text, re.MULTILINE)
    assert recipe, "Makefile has no clean-outputs recipe"
    words = recipe[1].split()
    assert words[:2] == ["rm", "-rf"]
    return {word.removesuffix("/*") for word in words[2:]}


def test_clean_outputs_matches_layout():
    outputs = layout_outputs(Path("run"))
    assert {"teachers", "pate", "shard_indices.json", "logs"} <= set(outputs)  # the walk found the layout functions
    targets = clean_outputs_targets()
    assert set(outputs) - targets == set(), f"clean-outputs misses outputs of {outputs}"
    assert targets - set(outputs) == set(), "clean-outputs removes paths layout does not name"
