"""``pate-lightning compare --routes A B ... | --all [--replicates N] [--out DIR]``: routes side by side.

Runs each route (a pipeline config, ``configs/routes/<name>.yaml``) with N replicates and writes
``results.json`` (one object per route), ``results.md`` (the table) and ``privacy_utility.png``.
Resumable: finished stages and replicates are kept. ``--from_results FILE`` runs nothing and prints the table of
a ``results.json`` (``--docs``: docs/results.md's table, from ``docs/results/routes.json``).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

from pate_lightning import layout
from pate_lightning.compare.picture import draw
from pate_lightning.compare.results import route_row
from pate_lightning.compare.run import run_route
from pate_lightning.compare.table import docs_table, labels_bought, markdown_table
from pate_lightning.errors import PateError
from pate_lightning.io import read_json, write_json, write_text

log = logging.getLogger(__name__)

ROUTES_DIR = Path("configs/routes")
RESULTS, TABLE, PICTURE = "results.json", "results.md", "privacy_utility.png"


def route_paths(routes: list[str], routes_dir: Path) -> list[Path]:
    """Each route as a file: a path as given, or a name under ``routes_dir``; unknown ones are an error."""
    paths = []
    for route in routes:
        path = Path(route) if route.endswith((".yaml", ".yml")) else routes_dir / f"{route}.yaml"
        if not path.is_file():
            known = sorted(p.stem for p in routes_dir.glob("*.yaml"))
            raise PateError(f"route {route!r} not found; the routes are {known} (or give a config file).", path)
        paths.append(path)
    return paths


def device_name() -> str:
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def compare(paths: list[Path], replicates: int, out_dir: Path) -> list[dict]:
    """Run every route, then write the results, the table and the picture under ``out_dir``."""
    if replicates < 1:
        raise ValueError(f"replicates must be >= 1, got {replicates}")
    rows = []
    for number, path in enumerate(paths, 1):
        log.info("[compare %d/%d] route %s, %d replicate(s)", number, len(paths), path.stem, replicates)
        runs, stages, seconds = run_route(path, out_dir, replicates)
        rows.append(route_row(path.stem, runs, stages, seconds, device_name()))
    write_json(layout.compare_file(out_dir, RESULTS), {"routes": rows})
    write_text(layout.compare_file(out_dir, TABLE), markdown_table(rows))
    draw(rows, layout.compare_file(out_dir, PICTURE))
    print(markdown_table(rows))
    for sentence in filter(None, map(labels_bought, rows)):  # what each route's private labels added, in words
        print(sentence)
    return rows


def render_results(path: Path, docs: bool) -> str:
    """The table of a written ``results.json``: compare's own, or docs/results.md's (``docs``)."""
    results = read_json(path)
    if not isinstance(results, dict) or not isinstance(results.get("routes"), list):
        raise PateError('is not a compare results file (a JSON object with a "routes" list); '
                        "give the results.json that `pate-lightning compare` wrote.", path)
    try:
        return docs_table(results) if docs else markdown_table(results["routes"])
    except (KeyError, TypeError) as error:
        raise PateError(f"a route lacks {error} or has the wrong type; rewrite it with `pate-lightning compare`"
                        + (" (the docs' table also needs description, command and source)" if docs else "") + ".",
                        path) from None


def compare_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pate-lightning compare", description=__doc__.splitlines()[0])
    chosen = parser.add_mutually_exclusive_group(required=True)
    chosen.add_argument("--routes", nargs="+", help="route names under --routes_dir, or config files")
    chosen.add_argument("--all", action="store_true", help="every route under --routes_dir")
    chosen.add_argument("--from_results", help="a results.json to print as a table; no route is run")
    parser.add_argument("--docs", action="store_true",
                        help="with --from_results: docs/results.md's table (description, command, source of each route)")
    parser.add_argument("--replicates", type=int, default=1, help="fresh noise and student per replicate (default 1)")
    parser.add_argument("--out", default="runs/compare", help="where results.json, results.md and the picture go")
    parser.add_argument("--routes_dir", default=str(ROUTES_DIR), help="the routes' folder (default configs/routes)")
    return parser


def compare_main(argv: list[str]) -> None:
    """``pate-lightning compare`` from its command-line arguments."""
    args = compare_parser().parse_args(argv)
    if args.from_results:
        print(render_results(Path(args.from_results), args.docs), end="")
        return
    routes_dir = Path(args.routes_dir)
    names = args.routes if args.routes else sorted(p.stem for p in routes_dir.glob("*.yaml"))
    compare(route_paths(names, routes_dir), args.replicates, Path(args.out))
