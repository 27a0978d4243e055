"""experiments/families_250_table.py reads a row's files as the stages write them (no model needed here)."""

import json

import torch

from experiments.families_250_table import markdown, measured_row, stage_seconds


def _row_dir(tmp_path, name="per_teacher_conditional"):
    run = tmp_path / name
    (run / "synthetic").mkdir(parents=True)
    (run / "teachers/teacher_0").mkdir(parents=True)
    stages = [{"stage": "generator", "name": "per_teacher", "reads_private_data": True, "dp": False, "rdp": None,
               "note": "", "teachers": 1}]
    (run / "synthetic/combined_metadata.json").write_text(json.dumps({"num_samples": 0, "privacy": {"stages": stages}}))
    torch.save(torch.zeros(0, 1, 28, 28), run / "synthetic/combined_samples.pt")
    (run / "synthetic/combined_labels.csv").write_text("index,label,confidence\n")
    (run / "teachers/teacher_0/selection_report.json").write_text(
        json.dumps({"pool_size": 475, "generation": {"class_counts": [20, 20, 20, 25, 100, 30, 15, 25, 120, 100]}}))
    (run / "stage_seconds.tsv").write_text("fit\t10.0\ngenerate\t2.5\nfit\t12.0\n")
    return run


def test_stage_seconds_keeps_the_last_line_of_a_stage(tmp_path):
    run = _row_dir(tmp_path)
    assert stage_seconds(run / "stage_seconds.tsv") == {"fit": 12.0, "generate": 2.5}
    assert stage_seconds(tmp_path / "missing.tsv") == {}


def test_a_row_that_kept_nothing_is_reported_as_such(tmp_path):
    run = _row_dir(tmp_path)
    row = measured_row("per_teacher_conditional", run, reference=None, pictures=tmp_path)
    assert (row["candidates"], row["kept"], row["asked"], row["answered"]) == (475, 0, 0, 0)
    assert row["student"] is None and row["reference_agreement_kept"] is None
    assert row["class_counts_asked"][8] == 120 and row["privacy_stages"][0]["reads_private_data"] is True
    table = markdown([row], reference_accuracy=0.972)
    assert "475 / 0 / 0 / 0" in table and "nothing kept" in table and "fit 12" in table
