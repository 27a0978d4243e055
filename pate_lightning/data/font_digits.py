"""``font_digits``: a public digit prior rendered offline from TrueType fonts, never from MNIST.

Digits 0-9 come from the fonts inside matplotlib's wheel (``mpl-data/fonts/ttf``) and any system
fonts found, and from jittered pen-stroke templates (``pen_digits.py``), made to look handwritten (random stroke width, rotation, shear, aspect, then elastic
distortion with Simard et al.'s alpha 34, sigma 4) and framed like MNIST (bounding box scaled into
20x20, centred by centre of mass in 28x28). Everything random draws from one seeded generator, so
equal (seed, fonts) give equal bytes. ``FontDigits`` mimics the torchvision MNIST reader, so the
dataset table in ``sources.py`` serves it like any MNIST-family set.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

from pate_lightning.data import pen_digits
from pate_lightning.data.augment import elastic

log = logging.getLogger(__name__)

NUM_CLASSES = 10
PROGRESS_EVERY = 10_000  # rendered digits between two progress lines (60,000 take minutes on a CPU)
GLYPH = 64  # side of the high-resolution canvas a glyph is rendered and warped on
ELASTIC_ALPHA, ELASTIC_SIGMA = 34.0, 4.0  # torchvision's parametrization: half the displacement of Simard et al. 2003's alpha 34 px
STROKE_LEVEL = (0.2, 0.6)  # measured: MNIST-like ink (~100 pixels > 0.5 per digit on average)
PEN_SHARE = 0.6  # share of samples drawn from pen templates (pen_digits.py) instead of fonts
RENDER_VERSION = 2  # bump when rendering changes: a cache of another version is rendered again
PER_CLASS = {True: 6000, False: 1000}  # train / test, MNIST's sizes
CACHE_SEED = {True: 0, False: 1}  # the cached splits are independent draws
# font_digits_small: a 12,000-image draw that renders in about half a minute, for demos
SMALL_PER_CLASS = {True: 1000, False: 200}
SMALL_CACHE_SEED = {True: 2, False: 3}
SYSTEM_FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts", "/Library/Fonts", "C:/Windows/Fonts")
# files with no real digit glyphs (symbol, placeholder or size-variant fonts)
EXCLUDED = ("LastResort", "cmex", "cmsy", "STIXSiz", "STIXNonUni", "Display", "Math", "ExtraLight")


def font_files() -> list[Path]:
    """matplotlib's bundled fonts, then system fonts, deduplicated by file name, in a fixed order."""
    import matplotlib

    bundled = sorted((Path(matplotlib.__file__).parent / "mpl-data" / "fonts" / "ttf").glob("*.ttf"))
    system = sorted(p for d in SYSTEM_FONT_DIRS if Path(d).is_dir() for p in Path(d).rglob("*.ttf"))
    seen, chosen = set(), []
    for path in [*bundled, *system]:
        # another version of a bundled font (same file name) adds nothing but weight on that font
        if path.name not in seen and not any(word in path.name for word in EXCLUDED):
            seen.add(path.name)
            chosen.append(path)
    return chosen


def render_glyphs(fonts: Sequence[Path]) -> tuple[torch.Tensor, list[Path]]:
    """Each usable font's ten digits, ink in [0, 1]: (F, 10, GLYPH, GLYPH), and the fonts kept.

    A font is kept only if all ten digits have ink and differ from each other (a missing glyph
    renders as the same box for every digit).
    """
    from PIL import Image, ImageDraw, ImageFont

    kept, glyphs = [], []
    for path in fonts:
        try:
            font = ImageFont.truetype(str(path), size=GLYPH // 2)
        except OSError:
            continue
        digits = []
        for digit in range(NUM_CLASSES):
            canvas = Image.new("L", (GLYPH, GLYPH), 0)
            ImageDraw.Draw(canvas).text((GLYPH / 2, GLYPH / 2), str(digit), fill=255, font=font, anchor="mm")
            digits.append(torch.from_numpy(np.asarray(canvas, dtype=np.float32) / 255.0))
        stack = torch.stack(digits)  # (10, G, G)
        flat = stack.flatten(1)
        distinct = torch.cdist(flat, flat).add(torch.eye(NUM_CLASSES) * 1e6).min() > 1.0
        if (flat.sum(1) > 5).all() and distinct:
            kept.append(path)
            glyphs.append(stack)
    if not glyphs:
        raise RuntimeError(f"none of {len(fonts)} font files renders the ten digits")
    return torch.stack(glyphs), kept


def _stroke(images: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    """Stroke width by level set: blur each glyph (N, 1, G, G), keep ink above ``level`` x its peak.

    A continuous width control (a low level thickens, a high one thins) that keeps thin fonts alive,
    unlike erosion by whole pixels; the ramp keeps edges anti-aliased.
    """
    blurred = TF.gaussian_blur(images, [13, 13], [2.0, 2.0])
    threshold = level.view(-1, 1, 1, 1) * blurred.amax((1, 2, 3), keepdim=True)
    return ((blurred - threshold) / (0.15 * blurred.amax((1, 2, 3), keepdim=True))).clamp(0, 1)


def _warp(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random rotation (+-15 deg), shear (+-0.35), aspect (0.75-1.25) and size (0.8-1.2), (N, 1, G, G)."""
    n = images.shape[0]
    u = torch.rand(n, 4, generator=gen)
    angle = (u[:, 0] * 2 - 1) * math.radians(15)
    shear = (u[:, 1] * 2 - 1) * 0.35
    aspect = 0.75 + 0.5 * u[:, 2]
    size = 0.8 + 0.4 * u[:, 3]
    cos, sin = torch.cos(angle), torch.sin(angle)
    # output -> input map: inverse of (rotate . shear . scale); glyphs are recentred later anyway
    a = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)  # (N, 2, 2)
    s = torch.stack([torch.stack([torch.ones(n), shear], -1), torch.stack([torch.zeros(n), torch.ones(n)], -1)], -2)
    scale = torch.diag_embed(torch.stack([size * aspect, size], -1))
    forward = a @ s @ scale
    theta = torch.cat([torch.linalg.inv(forward), torch.zeros(n, 2, 1)], -1)  # (N, 2, 3)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def mnist_frame(image: torch.Tensor) -> torch.Tensor:
    """MNIST's framing of one image (1, H, W): bounding box into 20x20 (aspect kept), centre of mass at (14, 14).

    >>> square = torch.zeros(1, 50, 50); square[:, 10:20, 30:40] = 1
    >>> framed = mnist_frame(square)
    >>> framed.shape, int((framed > 0.5).sum())
    (torch.Size([1, 28, 28]), 400)
    """
    ink = image[0] > 0.05
    rows, cols = ink.any(1).nonzero().flatten(), ink.any(0).nonzero().flatten()
    if not len(rows):
        return torch.zeros(1, 28, 28)
    crop = image[:, rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    h, w = crop.shape[1:]
    factor = 20.0 / max(h, w)
    size = (max(1, round(h * factor)), max(1, round(w * factor)))
    small = F.interpolate(crop[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0]
    small = (small / small.max().clamp(min=1e-6)).clamp(0, 1)  # thin strokes lose peak ink when shrunk
    mass = small[0].sum().clamp(min=1e-6)
    ys, xs = torch.arange(size[0], dtype=torch.float32), torch.arange(size[1], dtype=torch.float32)
    cy, cx = float((small[0].sum(1) * ys).sum() / mass), float((small[0].sum(0) * xs).sum() / mass)
    top, left = int(round(13.5 - cy)), int(round(13.5 - cx))
    top, left = min(max(top, 0), 28 - size[0]), min(max(left, 0), 28 - size[1])
    out = torch.zeros(1, 28, 28)
    out[:, top : top + size[0], left : left + size[1]] = small
    return out


def render(per_class: int, seed: int, glyphs: torch.Tensor, chunk: int = 2000) -> tuple[torch.Tensor, torch.Tensor]:
    """``per_class`` augmented digits of each class: images (10 * per_class, 28, 28) uint8, labels (N,) int64.

    Labels cycle 0..9; each sample is pen-drawn (share ``PEN_SHARE``) or from a font drawn uniformly. One generator drives every draw,
    in a fixed order, so the result depends only on (per_class, seed, glyphs).
    """
    gen = torch.Generator().manual_seed(seed)
    total = per_class * NUM_CLASSES
    labels = torch.arange(total) % NUM_CLASSES
    out = torch.empty(total, 28, 28, dtype=torch.uint8)
    for start in range(0, total, chunk):
        lab = labels[start : start + chunk]
        font = torch.randint(glyphs.shape[0], (len(lab),), generator=gen)
        base = glyphs[font, lab].unsqueeze(1)  # (n, 1, G, G)
        pen = torch.rand(len(lab), generator=gen) < PEN_SHARE
        for i in pen.nonzero().flatten().tolist():
            base[i, 0] = pen_digits.draw(int(lab[i]), GLYPH, gen)
        low, high = STROKE_LEVEL
        level = low + (high - low) * torch.rand(len(lab), generator=gen)
        warped = _warp(_stroke(base, level), gen)
        framed = torch.stack([mnist_frame(x) for x in warped])  # (n, 1, 28, 28)
        images = elastic(framed, gen, ELASTIC_ALPHA, ELASTIC_SIGMA)
        out[start : start + len(lab)] = (images[:, 0] * 255).round().to(torch.uint8)
        done = start + len(lab)
        if done == total or done // PROGRESS_EVERY > start // PROGRESS_EVERY:
            log.info("[font_digits] rendered %d/%d digits", done, total)
    return out, labels
