#!/usr/bin/env python3
"""Faded, colour-cast photos and their `auto_color` corrections (Tests/Fixtures/auto_color/), for issue 15's
check that the corrected photo is closer to the original than the faded one.

Photos: scikit-image's bundled astronaut, coffee, chelsea and rocket, resized (PIL LANCZOS) to 128 px wide, RGB.
Fades (the damage generator, applied to the 8-bit photo x, then rounded half to even and clipped to 0..255):

    yellowed   y = x * (0.70, 0.66, 0.52) + (62, 52, 38)     faded dyes under a yellowed varnish
    magenta    y = x * (0.72, 0.60, 0.68) + (58, 40, 60)     a print whose cyan dye faded first
    washed     y = x * 0.55 + 80                              low contrast, no cast

Corrections (the numpy reference of ImageOps.autoColor, `clip` = 0.5 %):

    white_patch  each channel's clip and 100 - clip percentiles (np.percentile, linear) mapped to 0 and 255:
                 round((v - lo) * 255 / (hi - lo)) clipped, float64, half to even
    gray_world   the luminance's (PIL "L") percentiles stretch all channels alike, then each channel is
                 multiplied by mean(gray) / mean(channel) (means of the stretched image; gains clamped to
                 0.5..2), rounded half to even and clipped
    none         the luminance's percentiles stretch all channels alike (hue kept)

cases.json lists, per photo and fade, the mean absolute error (8-bit levels) of the faded photo and of each
correction against the original. Run from the repo root: ~/venv/bin/python tools/reference/make_auto_color_fixtures.py
"""
import json
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

OUT = Path(__file__).resolve().parents[2] / "Tests/Fixtures/auto_color"
PHOTOS = {"astronaut": data.astronaut, "coffee": data.coffee, "chelsea": data.chelsea, "rocket": data.rocket}
FADES = {
    "yellowed": (np.array([0.70, 0.66, 0.52]), np.array([62, 52, 38])),
    "magenta": (np.array([0.72, 0.60, 0.68]), np.array([58, 40, 60])),
    "washed": (np.array([0.55, 0.55, 0.55]), np.array([80, 80, 80])),
}
CLIP = 0.5


def stretch(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    if hi <= lo:
        return x.astype(np.float64)
    return (x.astype(np.float64) - lo) * 255.0 / (hi - lo)


def to_u8(v: np.ndarray) -> np.ndarray:
    return np.clip(np.round(v), 0, 255).astype(np.uint8)


def luminance(x: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(x).convert("L"))


def white_patch(x):
    out = np.empty_like(x)
    for c in range(3):
        lo, hi = np.percentile(x[..., c], CLIP), np.percentile(x[..., c], 100 - CLIP)
        out[..., c] = to_u8(stretch(x[..., c], lo, hi)) if hi > lo else x[..., c]
    return out


def luminance_levels(x):
    g = luminance(x)
    lo, hi = np.percentile(g, CLIP), np.percentile(g, 100 - CLIP)
    return to_u8(stretch(x, lo, hi)) if hi > lo else x.copy()


def gray_world(x):
    y = luminance_levels(x)
    means = y.reshape(-1, 3).astype(np.float64).mean(axis=0)
    target = means.mean()
    gains = np.clip(target / np.maximum(means, 1e-6), 0.5, 2.0)
    return to_u8(y.astype(np.float64) * gains)


CORRECTIONS = {"white_patch": white_patch, "gray_world": gray_world, "none": luminance_levels}


def mae(a, b):
    return float(np.abs(a.astype(np.int32) - b.astype(np.int32)).mean())


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    cases, totals = [], {"faded": 0.0, **{k: 0.0 for k in CORRECTIONS}}
    for name, load in PHOTOS.items():
        photo = Image.fromarray(load()).convert("RGB")
        photo = photo.resize((128, round(128 * photo.height / photo.width)), Image.LANCZOS)
        x = np.asarray(photo)
        Image.fromarray(x).save(OUT / f"{name}.png")
        for fade, (gain, offset) in FADES.items():
            faded = to_u8(x.astype(np.float64) * gain + offset)
            Image.fromarray(faded).save(OUT / f"{name}_{fade}.png")
            entry = {"photo": name, "fade": fade, "mae": {"faded": mae(faded, x)}}
            for correction, fn in CORRECTIONS.items():
                fixed = fn(faded)
                Image.fromarray(fixed).save(OUT / f"{name}_{fade}_{correction}.png")
                entry["mae"][correction] = mae(fixed, x)
            for k, v in entry["mae"].items():
                totals[k] += v
            cases.append(entry)
            print(name, fade, {k: round(v, 2) for k, v in entry["mae"].items()})
    mean = {k: v / len(cases) for k, v in totals.items()}
    print("mean", {k: round(v, 2) for k, v in mean.items()})
    (OUT / "cases.json").write_text(json.dumps({"generator": "tools/reference/make_auto_color_fixtures.py", "clip": CLIP,
                                                "cases": cases, "mean_mae": mean}, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
