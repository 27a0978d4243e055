"""Registers each stage's exporter and done-marker with the runner, and the extra CLI commands."""

from __future__ import annotations

from pate_lightning import layout, runner
from pate_lightning.callbacks.vae_export import VAEExport

runner.register_stage("teacher_vae", lambda run_dir, t: layout.vae_dir(run_dir, t) / "training_report.json", VAEExport)

# generate: the LabelingCallback named in configs/generate.yaml writes the files (its thresholds are
# config keys), so the runner adds no exporter; the selection report is written last.
runner.register_stage("generate", layout.selection_report_file)


from pate_lightning import cli  # noqa: E402  (appended registration)
from pate_lightning.combine import combine_command  # noqa: E402
from pate_lightning.evaluate_command import evaluate_command  # noqa: E402

cli.register_command("evaluate", evaluate_command)
cli.register_command("combine", combine_command)

# pate: votes, noisy aggregation, RDP accounting, student, pate/report.json
from pate_lightning.pate.command import pate_command  # noqa: E402

cli.register_command("pate", pate_command)

# teacher classifiers: trained_nets/{id}/model.pth + report.json (the report is the done-marker)
from pate_lightning.callbacks.classifier_export import ClassifierExport  # noqa: E402
from pate_lightning.eval_teachers import eval_teachers_command  # noqa: E402

runner.register_stage("teacher_classifier", lambda run_dir, t: layout.classifier_dir(run_dir, t) / "report.json", ClassifierExport)
cli.register_command("eval-teachers", eval_teachers_command)
