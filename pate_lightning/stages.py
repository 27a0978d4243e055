"""Registers each stage's exporter and done-marker with the runner, and the extra CLI commands."""

from __future__ import annotations

from pate_lightning import layout, runner
from pate_lightning.callbacks.vae_export import VAEExport

runner.register_stage("teacher_vae", lambda run_dir, t: layout.vae_dir(run_dir, t) / "training_report.json", VAEExport)
