import json

import pytest

from experiments.collect_pretrain_rows import collect, table


def _run(accuracy: float, answered: int, pretraining: dict | None) -> dict:
    privacy = {"private": True, "epsilon_data_independent": 3.7, "epsilon_data_dependent_released": 1.4,
               "epsilon_labels": 3.85, "epsilon_end_to_end": 3.85, "privacy_scope": "labels", "delta": 1e-5,
               "conversion": "balle2020"}
    student = {"method": "fixmatch", "epochs": 40, "lr": 0.003, "elastic": 0.5, "steps": 1600, "seconds": 9.0,
               "test_accuracy": accuracy, "test_accuracy_per_class": [accuracy] * 10, "pretraining": pretraining}
    return {"query_source": "mnist_test", "protocol": "papers", "mechanism_description": "confident_gnmax(T=200)",
            "num_teachers": 3, "teacher_ids": [0, 1, 2], "queries_asked": 500, "queries_answered": answered,
            "label_accuracy": 0.97, "answered_label_counts": [1] * 10, "privacy": privacy,
            "student_method": "fixmatch+pretrain:font_digits", "student": student, "seconds": 10.0}


def test_every_run_is_listed_with_its_times_and_repeats_are_averaged(tmp_path):
    public = {"set": "font_digits", "epochs": 2, "test_accuracy": 0.91, "seconds": 1.0}
    for variant, accuracy, answered in (("b_x", 0.98, 300), ("b_x_r2", 0.99, 290)):
        (tmp_path / variant / "pate").mkdir(parents=True)
        (tmp_path / variant / "pate" / "report.json").write_text(json.dumps({"runs": [_run(accuracy, answered, public)]}))
    (tmp_path / "times.txt").write_text("b_x wall 100.5 s user 40.0 s sys 2.5 s\n")
    rows = collect(tmp_path)
    assert [r["variant"] for r in rows] == ["b_x", "b_x_r2"]
    assert rows[0]["cpu_s"] == 42.5 and rows[0]["wall_s"] == 100.5 and "cpu_s" not in rows[1]
    assert rows[1]["answered"] == 290 and rows[0]["report_entry"]["teacher_ids"] == "3 teachers"
    assert rows[0]["setting"] == "fixmatch+pretrain:font_digits 2+40 ep, lr 0.003, elastic 0.5"
    lines = table(rows)
    assert "δ 1e-05, conversion balle2020, scope `labels`" in lines[0]
    assert lines[-1].endswith("| 2 | 98.5% |")


def test_a_run_without_pretraining_is_labelled_plainly(tmp_path):
    (tmp_path / "a_y" / "pate").mkdir(parents=True)
    (tmp_path / "a_y" / "pate" / "report.json").write_text(json.dumps({"runs": [_run(0.975, 100, None)]}))
    (row,) = collect(tmp_path)
    assert row["setting"] == "fixmatch 40 ep, lr 0.003, elastic 0.5" and row["row"].startswith("(a)")
    assert row["student_accuracy"] == pytest.approx(0.975)
