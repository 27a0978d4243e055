"""Which committed measurements stand for each route in docs/results.md's table: assembles
docs/results/routes.json from them.

No 250-teacher route has been rerun by ``pate-lightning compare`` yet, so each route's row is built from the
measurement file its figures come from (named in ``source``; ``rerun_by_compare: false``): the replicates'
figures are recast as report entries and passed through compare's own ``route_row``, so the composed epsilon
is the package's ledger over the recorded public parameters, as ``compare`` computes it. The DP-SGD student
baselines have no measurement yet and are listed as such. docs/results.md's table is then

    python -m experiments.readme_routes --out docs/results/routes.json
    pate-lightning compare --from_results docs/results/routes.json --docs
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Optional

from experiments.latent_stats_route import release_rdp, sigma_for_epsilon
from pate_lightning.compare.results import route_row
from pate_lightning.io import read_json, write_json
from pate_lightning.privacy.dp_sgd_accounting import dp_sgd_privacy_entry, solve_noise_multiplier
from pate_lightning.privacy.ledger import contract_entry
from pate_lightning.privacy.release_settings import ReleaseSettings

RESULTS = Path("docs/results")
DELTA, CONVERSION = 1e-5, "balle2020"
CONFIDENT = {"threshold": 200.0, "sigma1": 150.0, "sigma2": 40.0}
# the measured runs released the data-dependent epsilon at order 16 (13 for the per-teacher pool), the rule's
# beta and sigma_ss; today's default order is a rule on the settings (docs/privacy.md)
RELEASED_AT = {"order_16": 16.0, "order_13": 13.0}
PUBLIC_POOL = [contract_entry(stage="generator", name="public", reads_private_data=False, dp=False,
                              note="font-digit prior, no private data"),
               contract_entry(stage="selection", name="pate", reads_private_data=False, dp=False,
                              note="every candidate a PATE query")]
BASELINE_DESCRIPTION = "student trained by DP-SGD (opacus) on the union of the shards, ε {epsilon} (baseline)"


def command(name: str) -> str:
    return f"pate-lightning pipeline --config configs/routes/{name}.yaml"


def release(order: Optional[float]) -> Optional[dict[str, float]]:
    if order is None:
        return None
    settings = ReleaseSettings(order=order).resolved()
    return {"order": settings.order, "beta": settings.beta, "sigma_ss": settings.sigma_ss}


def entry(
    *, mechanism: str, parameters: dict, asked: int, answered: int, scope: str, epsilon_labels: float,
    epsilon_end_to_end: Optional[float], released: Optional[float], release_order: Optional[float],
    accuracy: float, public_only: Optional[float], seconds: Optional[float] = None,
) -> dict[str, Any]:
    """One measured run as the report entry ``compare`` reads (public figures only)."""
    return {
        "mechanism": mechanism, "parameters": parameters, "queries_asked": asked, "queries_answered": answered,
        "privacy": {"private": True, "delta": DELTA, "conversion": CONVERSION, "privacy_scope": scope,
                    "epsilon_labels": epsilon_labels, "epsilon_end_to_end": epsilon_end_to_end,
                    "epsilon_data_dependent_released": released, "release": release(release_order)},
        "student": {"test_accuracy": accuracy, "public_only_accuracy": public_only},
        "seconds": seconds,
    }


def row(name: str, description: str, source: str, runs: list[dict], stages: Optional[list], device: str,
        route_command: Optional[str] = None) -> dict[str, Any]:
    built = route_row(name, runs, stages, {}, device)
    return {**built, "description": description, "command": route_command or command(name), "source": source,
            "rerun_by_compare": False}


def papers_rows() -> list[dict]:
    """The real-query routes: the student of configs/student_papers.yaml, every run of it in student_repeats.json."""
    repeats = read_json(RESULTS / "student_repeats.json")
    chosen = repeats["chosen"]
    settings = {"a": ("lnmax_100", "LNMax γ=0.05, 100 MNIST test queries, papers' protocol", "lnmax",
                      {"gamma": 0.05}, 100, None),
                "b": ("confident_gnmax_500", "Confident-GNMax, 500 MNIST test queries, papers' protocol",
                      "confident_gnmax", CONFIDENT, 500, RELEASED_AT["order_16"])}
    rows = []
    for letter, (name, description, mechanism, parameters, asked, order) in settings.items():
        group = next(g for g in repeats["groups"] if g["row"] == letter and g["variant"] == chosen[letter])
        runs = [entry(mechanism=mechanism, parameters=parameters, asked=asked, answered=run["answered"],
                      scope="labels", epsilon_labels=group["epsilon_labels"], epsilon_end_to_end=group["epsilon_labels"],
                      released=run["epsilon_released"], release_order=order, accuracy=run["test"],
                      public_only=run["public_only"], seconds=run["seconds"])
                for run in repeats["runs"] if run["row"] == letter and run["variant"] == chosen[letter]]
        rows.append(row(name, description, "docs/results/student_repeats.json", runs, None, "CPU, 1 worker"))
    return rows


def dp_rows_entry(measured: dict, scope: Optional[str] = None) -> dict[str, Any]:
    asked = measured["asked"]
    return entry(mechanism="confident_gnmax", parameters=CONFIDENT, asked=asked, answered=measured["answered"],
                 scope=scope or measured["privacy_scope"], epsilon_labels=measured["epsilon_labels"],
                 epsilon_end_to_end=measured["epsilon_end_to_end"],
                 released=measured["epsilon_data_dependent_released"], release_order=RELEASED_AT["order_16"],
                 accuracy=measured["student_accuracy"], public_only=measured["pretraining"]["test_accuracy"],
                 seconds=measured.get("pate_seconds"))


def synthetic_rows() -> list[dict]:
    """Public prior, DP-SGD hybrid and latent statistics: dp_rows_250.json; hybrid with filters: its rehearsal runs."""
    source = "docs/results/dp_rows_250.json"
    measured = {r["row"]: r for r in read_json(RESULTS / "dp_rows_250.json")["rows"]}
    device = "2-core CPU"
    dp_sgd = measured["DP-SGD hybrid, ε 4 a teacher"]
    sigma = solve_noise_multiplier(4.0, DELTA, 0.5, 40)  # the route's target_epsilon 4, Poisson rate 0.5, 40 steps
    dp_sgd_pool = [dp_sgd_privacy_entry(sigma, 0.5, 40, "hybrid", "DP-SGD per teacher, epsilon 4")]
    latent = measured["latent statistics, ε 1 (union)"]
    latent_pool = [contract_entry(stage="generator", name="latent_stats", reads_private_data=True, dp=True,
                                  rdp=release_rdp(sigma_for_epsilon(1.0)), note="class statistics, epsilon 1")]
    rehearsal = read_json(RESULTS / "hybrid_rehearsal_250.json")["runs"]
    return [
        row("public_prior_800", "public prior (font digits) + PATE selection, 800 asked", source,
            [dp_rows_entry(measured["public, 800 asked"])], PUBLIC_POOL, device),
        row("public_prior_2600", "public prior (font digits) + PATE selection, 2,600 asked", source,
            [dp_rows_entry(measured["public (prior + PATE selection)"]), dp_rows_entry(measured["public, replicate"])],
            PUBLIC_POOL, device),
        row("dp_sgd_hybrid", "prior fine-tuned per shard by DP-SGD (ε 4 a teacher) + PATE selection, 2,100 asked",
            source, [dp_rows_entry(dp_sgd, "end_to_end_settings_tuned_on_private_data")], dp_sgd_pool, device),
        row("latent_stats", "DP class statistics in the prior's latent space (ε 1) + PATE selection, 2,600 asked",
            source, [dp_rows_entry(latent)], latent_pool, device,
            "python -m experiments.latent_stats_route (no route config), then pate-lightning pate"),
        row("hybrid_filters", "prior fine-tuned per shard without DP + teacher filters, 1,500 asked, rehearsal",
            "docs/results/hybrid_rehearsal_250.json", [run["report_entry"] for run in rehearsal],
            rehearsal[0]["report_entry"]["privacy"]["ledger"][:2], device),
    ]


def per_teacher_row() -> dict[str, Any]:
    """The guide's per-teacher VAEs: epsilons in headline_epsilons.json, the student in docs/measurements.md."""
    pooled = next(r for r in read_json(Path("docs/headline_epsilons.json"))["rows"] if r["asked"] == 4015)
    run = entry(mechanism="confident_gnmax", parameters=pooled["parameters"], asked=pooled["asked"],
                answered=pooled["answered"], scope=pooled["privacy_scope"],
                epsilon_labels=pooled["new_labels_with_release_cost"], epsilon_end_to_end=None, released=None,
                release_order=pooled["release_order"], accuracy=0.611, public_only=None)  # measurements.md
    unbounded = [contract_entry(stage="generator", name="per_teacher", reads_private_data=True, dp=False)]
    return row("per_teacher_guide", "the guide's per-teacher VAEs and thresholds, every kept sample asked",
               "docs/headline_epsilons.json", [run], unbounded, "2-core CPU")


def routes_document() -> dict[str, Any]:
    return {
        "routes": [*papers_rows(), *synthetic_rows(), per_teacher_row()],
        "not_yet_measured": [{"name": f"dp_sgd_student_eps{e}", "description": BASELINE_DESCRIPTION.format(epsilon=e),
                              "command": command(f"dp_sgd_student_eps{e}")} for e in (1, 2, 4, 8)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(RESULTS / "routes.json"))
    write_json(Path(parser.parse_args().out), routes_document())


if __name__ == "__main__":
    main()
