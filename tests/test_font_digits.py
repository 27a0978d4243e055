import json

import pytest
import torch

from pate_lightning.data import font_digits, sources


@pytest.fixture(scope="module")
def glyphs():
    fonts = font_digits.font_files()[:4]
    return font_digits.render_glyphs(fonts)


def test_bundled_fonts_render_ten_distinct_digits(glyphs):
    stack, kept = glyphs
    assert stack.shape[1:] == (10, font_digits.GLYPH, font_digits.GLYPH)
    assert len(kept) == stack.shape[0] >= 1
    assert all("mpl-data" in str(p) for p in kept)  # matplotlib's wheel comes first


def test_render_is_deterministic_by_seed_and_mnist_framed(glyphs):
    stack, _ = glyphs
    a, labels = font_digits.render(3, 7, stack)
    b, _ = font_digits.render(3, 7, stack)
    c, _ = font_digits.render(3, 8, stack)
    assert a.dtype == torch.uint8 and a.shape == (30, 28, 28)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.bincount(labels, minlength=10).tolist() == [3] * 10
    # MNIST framing: ink inside the central region, centre of mass near the middle (elastic moves it a little)
    x = a.float()
    assert x[:, :2].sum() == 0 or x[:, :2].sum() < 0.02 * x.sum()
    ys = torch.arange(28.0)
    com_y = (x.sum(2) * ys).sum(1) / x.sum((1, 2))
    assert (com_y - 13.5).abs().max() < 3


def test_dataset_table_serves_font_digits_without_reading_mnist(tmp_path, monkeypatch):
    def no_mnist(*args, **kwargs):
        raise AssertionError("font_digits read MNIST")

    monkeypatch.setattr(sources.datasets, "MNIST", no_mnist)
    monkeypatch.setitem(sources.DATASETS, "mnist", no_mnist)
    monkeypatch.setattr(font_digits, "PER_CLASS", {True: 4, False: 2})
    every_font = font_digits.font_files
    monkeypatch.setattr(font_digits, "font_files", lambda: every_font()[:3])
    assert sources.prepare("font_digits", tmp_path) == "rendered from fonts"  # not "torchvision": nothing downloaded
    images, labels = sources.load_split("font_digits", tmp_path, train=True)
    assert images.shape == (40, 28, 28) and images.dtype == torch.uint8
    assert torch.bincount(labels).tolist() == [4] * 10
    test_images, _ = sources.load_split("font_digits", tmp_path, train=False)
    assert test_images.shape == (20, 28, 28) and not torch.equal(test_images, images[:20])
    manifest = json.loads((tmp_path / "FontDigits" / "processed" / "manifest.json").read_text())
    assert manifest["train"]["count"] == 40 and len(manifest["train"]["fonts"]) == 3
    assert len(manifest["train"]["images_sha256"]) == 64
    assert sources.prepare("font_digits", tmp_path) == "existing"  # cached: not rendered again
    assert list(tmp_path.iterdir()) == [tmp_path / "FontDigits"]  # nothing MNIST-shaped was written


def test_pen_digits_are_deterministic_and_inked():
    from pate_lightning.data import pen_digits

    for digit in range(10):
        a = pen_digits.draw(digit, 64, torch.Generator().manual_seed(digit))
        b = pen_digits.draw(digit, 64, torch.Generator().manual_seed(digit))
        assert a.shape == (64, 64) and torch.equal(a, b) and a.sum() > 20
    # every template of the open-top 4 and the others differ from each other
    gen = torch.Generator().manual_seed(0)
    fours = {pen_digits.draw(4, 64, gen).sum().item() for _ in range(6)}
    assert len(fours) > 1


def test_the_small_set_is_its_own_cache_with_its_own_draw(tmp_path, monkeypatch):
    monkeypatch.setattr(font_digits, "PER_CLASS", {True: 3, False: 2})
    monkeypatch.setattr(font_digits, "SMALL_PER_CLASS", {True: 3, False: 2})
    every_font = font_digits.font_files
    monkeypatch.setattr(font_digits, "font_files", lambda: every_font()[:3])
    small, small_labels = sources.load_split("font_digits_small", sources.prepare("font_digits_small", tmp_path) and tmp_path, train=True)
    full, _ = sources.load_split("font_digits", sources.prepare("font_digits", tmp_path) and tmp_path, train=True)
    assert small.shape == full.shape == (30, 28, 28) and torch.bincount(small_labels).tolist() == [3] * 10
    assert not torch.equal(small, full)  # own seeds: an independent draw, not a prefix of the full set
    manifest = json.loads((tmp_path / "FontDigitsSmall" / "processed" / "manifest.json").read_text())
    assert manifest["train"]["seed"] == font_digits.SMALL_CACHE_SEED[True] and manifest["train"]["per_class"] == 3


def test_render_logs_progress_and_small_set_names_its_source(tmp_path, monkeypatch, caplog):
    every_font = font_digits.font_files
    monkeypatch.setattr(font_digits, "font_files", lambda: every_font()[:2])
    monkeypatch.setattr(font_digits, "SMALL_PER_CLASS", {True: 3, False: 1})
    monkeypatch.setattr(font_digits, "PROGRESS_EVERY", 20)
    with caplog.at_level("INFO", logger="pate_lightning.data.font_digits"):
        assert sources.prepare("font_digits_small", tmp_path) == "rendered from fonts"
    lines = [r.getMessage() for r in caplog.records if r.name == "pate_lightning.data.font_digits"]
    # 30 train digits in one chunk crossing 20, then the 10 test digits: a line each time
    assert lines == ["[font_digits] rendered 30/30 digits", "[font_digits] rendered 10/10 digits"]
