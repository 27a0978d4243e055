"""Public pretraining of the student: recorded, free of private data, and a real head start."""

import pytest
import torch

from pate_lightning.pate import student_pretrain
from pate_lightning.pate.student_training import StudentSettings, train_student
from tests.test_student import separable_digits


def test_settings_name_the_pretraining_and_refuse_unknown_sets():
    assert StudentSettings(method="fixmatch", pretrain="font_digits").check().description == "fixmatch+pretrain:font_digits"
    assert StudentSettings().description == "supervised"
    with pytest.raises(ValueError, match="student.pretrain must be one of"):
        StudentSettings(pretrain="mnist").check()  # the private data set is never a pretraining set
    with pytest.raises(ValueError, match="pretrain_epochs"):
        StudentSettings(pretrain="font_digits", pretrain_epochs=0).check()
    with pytest.raises(ValueError, match="unknown student.pretrain"):
        student_pretrain.public_pretraining_set("mnist", "data")


def test_pretraining_is_recorded_and_gives_a_head_start(tmp_path):
    public = separable_digits(200, seed=1)  # labelled "public" images of the same task
    test = separable_digits(100, seed=2)
    # one answered query per class: alone, far too little; after the public set, enough
    images, labels = separable_digits(10, seed=3)
    settings = StudentSettings(epochs=1, batch_size=10, val_fraction=0.0, architecture="small_cnn", lr=3e-3)
    alone = train_student(images, labels, test, settings, "cpu", 0, tmp_path)
    pretrained_settings = StudentSettings(**{**settings.__dict__, "pretrain": "font_digits", "pretrain_epochs": 3})
    pretrained = train_student(images, labels, test, pretrained_settings, "cpu", 0, tmp_path, public=public)
    record = pretrained["pretraining"]
    assert alone["pretraining"] is None
    assert record["set"] == "font_digits" and record["images"] == 200 and record["epochs"] == 3
    assert record["reads_private_data"] is False
    assert record["test_accuracy"] > 0.9
    assert pretrained["test_accuracy"] >= 0.95 and pretrained["test_accuracy"] > alone["test_accuracy"] + 0.1


def test_a_pretrain_setting_without_its_public_set_is_refused(tmp_path):
    images, labels = separable_digits(10)
    settings = StudentSettings(epochs=1, val_fraction=0.0, pretrain="font_digits")
    with pytest.raises(ValueError, match="needs its public set"):
        train_student(images, labels, separable_digits(10), settings, "cpu", 0, tmp_path)


def test_a_last_batch_of_one_image_does_not_break_batch_norm(tmp_path):
    images, labels = separable_digits(33)  # batch 32: the remainder is one image
    settings = StudentSettings(epochs=1, batch_size=32, val_fraction=0.0, architecture="small_cnn")
    result = train_student(images, labels, separable_digits(10), settings, "cpu", 0, tmp_path)
    assert result["steps"] == 1 and result["sizes"]["train"] == 33


def test_the_label_filter_drops_the_labels_the_public_model_contradicts(tmp_path):
    public = separable_digits(200, seed=1)
    test = separable_digits(50, seed=2)
    images, labels = separable_digits(30, seed=3)
    flipped = torch.tensor([2, 11, 25])
    noisy = labels.clone()
    noisy[flipped] = (labels[flipped] + 5) % 10  # three wrong aggregated labels
    settings = StudentSettings(epochs=1, batch_size=10, val_fraction=0.0, architecture="small_cnn", lr=3e-3,
                               pretrain="font_digits", pretrain_epochs=3)
    kept = train_student(images, noisy, test, settings, "cpu", 0, tmp_path, public=public)
    filtered = train_student(images, noisy, test, StudentSettings(**{**settings.__dict__, "label_filter": 0.5}), "cpu",
                             0, tmp_path, public=public)
    assert kept["labels_dropped"] == [] and kept["sizes"]["train"] == 30
    assert filtered["labels_dropped"] == flipped.tolist() and filtered["sizes"]["train"] == 27
    assert filtered["pretraining"]["rehearsal_images"] == 0
    with pytest.raises(ValueError, match="label_filter .* needs student.pretrain"):
        StudentSettings(label_filter=0.9).check()


def test_the_filter_predicts_in_evaluation_mode_and_gives_training_back():
    from pate_lightning.pate.label_filter import predict_log_probs
    from pate_lightning.pate.student import StudentModule

    model = StudentModule(architecture="small_cnn")  # batch norm: the two modes differ
    images = separable_digits(12)[0]
    predicted = predict_log_probs(model, images)
    assert model.training and model.net.training  # Lightning's fit would not switch it back
    with torch.no_grad():
        assert torch.allclose(predicted, model.eval()(images), atol=1e-5)
