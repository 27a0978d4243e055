import json

from pate_lightning import layout
from pate_lightning.pipeline.run_report import print_run_report


def _write_reports(run_dir):
    """Teacher 0's classifier and VAE reports: values measured on its private shard without noise."""
    classifier = layout.classifier_report_file(layout.classifiers_root(run_dir), 0)
    classifier.parent.mkdir(parents=True)
    classifier.write_text(json.dumps({"test_accuracy": 0.9123, "history": [{"epoch": 0, "loss": 0.5}]}))
    vae = layout.vae_report_file(run_dir, 0)
    vae.parent.mkdir(parents=True)
    history = [{"epoch": 0, "recon": 120.5, "kl": 9.75, "beta": 1.0}]
    vae.write_text(json.dumps({"history": history, "final": history[-1]}))


def test_shard_values_are_shown_only_on_request_and_marked(tmp_path):
    _write_reports(tmp_path)
    plain = print_run_report(tmp_path)
    assert "0.912" not in plain and "120.5" not in plain and "clf acc" not in plain
    assert "--diagnostics true" in plain and not layout.figure_file(tmp_path, "losses_teacher_0").exists()
    assert not layout.private_figure_file(tmp_path, "losses_teacher_0").exists()

    shown = print_run_report(tmp_path, diagnostics=True)
    assert "[diag] clf acc" in shown and "[diag] vae recon" in shown and "0.912" in shown and "120.5" in shown
    assert "NOT FOR RELEASE" in shown
    # the loss curves of a private shard go under private/, never beside the publishable figures
    assert layout.private_figure_file(tmp_path, "losses_teacher_0").is_file()
    assert not layout.figure_file(tmp_path, "losses_teacher_0").exists()
