#!/usr/bin/env python3
"""The defect-detection evaluation set (Tests/Fixtures/defects/), for issue 15 part 1: real photographs with
drawn damage whose true masks are known, and the clean photographs for the false-positive check.

Photos: scikit-image's bundled photographs astronaut, coffee, chelsea, rocket (colour) and camera, coins, clock,
moon (grayscale), resized with PIL LANCZOS so the long side is 320 px.

The damage generator (numpy, seeded per photo; every step below is in `damage`):

 1. fading: y = x * gain + offset; gain 0.80-0.92 and offset 10-25 levels, per channel for colour photos
    (a mild cast), one pair for grayscale ones.
 2. scratches (3-6): a quadratic Bezier curve (mostly straight, bow at most 4 % of its length) of 0.35-0.95 of
    the image diagonal, clipped to the image, width 1-4 px (1 and 2 most often), drawn with anti-aliased
    edges. Lighter or darker than what it crosses: a light one moves each pixel towards 215-250, a dark one
    towards 15-50, with a strength that varies slowly along the curve (0.55-1).
 3. dust and spots (12-30): discs of radius 0.8-3 px (a few elongated up to 2:1), light or dark, soft edges.
 4. a tear or crease (on about half of the photos): a jagged path (a random walk with momentum) across the
    photo, 2-3 px of paper white (225-250), and a 1-2 px shadow (the photo darkened by 35-55 %) along one side.
 5. film grain: Gaussian noise of 4 levels (std) blurred with sigma 0.6, the same on every channel, plus
    1.5 levels per channel independently.
 6. JPEG re-compression at quality 80-90 (PIL, 4:2:0 for colour), decoded again: the damaged photo is that.

True mask (`<photo>_mask.png`): 255 where a defect was drawn (coverage >= 0.5) and is visible, that is its
luminance moved by at least 16 levels from the faded photo beneath; 128 where one was drawn but is not visible
(say a white scratch over a white sky): such pixels count neither as defect nor as clean. The scoring adds a
2-pixel band (Chebyshev distance <= 2) around every 255 pixel that also counts neither way.

Scoring (`score` below; Swift: DefectEvaluationTests): predicted pixels are TP on 255, FP on 0 outside the band,
FN the 255 pixels not predicted. recall = TP / (TP + FN), precision = TP / (TP + FP), IoU = TP / (TP + FP + FN).

Detectors measured (numbers in cases.json and the README beside it): the old top-hat mask (ImageOps.defectMask at
threshold 0.12) and the new one (tools/reference/defect_detector.py = ImageOps.detectDefects, t = 18 levels).

Files per photo: `<photo>.png` (clean, resized), `<photo>_damaged.png`, `<photo>_mask.png`. cases.json lists them
with the damage drawn. Run from the repo root: ~/venv/bin/python tools/reference/make_defect_eval.py

Held-out set (--held-out, to check the detector is not tuned to the eight photos): HELD_OUT, eight other
scikit-image photographs (stereo_motorcycle's left view, hubble_deep_field, retina, immunohistochemistry, text,
brick, grass, gravel; chosen before any was measured), the same generator with other seeds (2500 + i at 320 px,
3500 + i at 512 px), never enlarged. `--held-out --side 320` writes Tests/Fixtures/defects-held-out-320 (committed,
checked by DefectDetectorTests), `--held-out --side 512` Tests/Fixtures/defects-held-out-512 (not committed; its
scores are in Tests/Fixtures/defects/README.md). `--out` writes elsewhere.
"""
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage as ndi
from skimage import data

OUT = Path(__file__).resolve().parents[2] / "Tests/Fixtures/defects"
PHOTOS = ["astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "clock", "moon"]
SIDE = 320
# The held-out set (--held-out): other scikit-image photographs, other seeds, also at 512 px; never used to choose.
HELD_OUT = ["motorcycle", "hubble", "retina", "ihc", "text", "brick", "grass", "gravel"]
LOADERS = {"motorcycle": "stereo_motorcycle", "hubble": "hubble_deep_field", "ihc": "immunohistochemistry"}
HELD_OUT_SEEDS = {320: 2500, 512: 3500}
VISIBLE = 16.0  # levels of luminance change for a drawn pixel to count as a defect
THRESHOLD_LEVELS = 18  # the new detector's t: defect_threshold 0.07 (round(0.07 * 255))


def load(name: str, side: int = SIDE) -> np.ndarray:
    """A scikit-image photo resized (PIL LANCZOS) so its long side is `side`, never enlarged (HELD_OUT photos)."""
    x = getattr(data, LOADERS.get(name, name))()
    img = Image.fromarray(x[0] if isinstance(x, tuple) else x)
    if name in HELD_OUT and max(img.size) <= side:
        return np.asarray(img)
    scale = side / max(img.size)
    img = img.resize((round(img.width * scale), round(img.height * scale)), Image.LANCZOS)
    return np.asarray(img)


def luma(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    return x if x.ndim == 2 else x[..., 0] * 0.299 + x[..., 1] * 0.587 + x[..., 2] * 0.114


def segment_coverage(h, w, pts, width):
    """Anti-aliased coverage (0..1) of a polyline of half-width width/2 (distance to the nearest segment)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    dist = np.full((h, w), np.inf)
    for (y0, x0), (y1, x1) in zip(pts[:-1], pts[1:]):
        dy, dx = y1 - y0, x1 - x0
        ll = dy * dy + dx * dx
        t = np.clip(((yy - y0) * dy + (xx - x0) * dx) / max(ll, 1e-9), 0, 1)
        d = np.hypot(yy - (y0 + t * dy), xx - (x0 + t * dx))
        dist = np.minimum(dist, d)
    return np.clip(width / 2 + 0.5 - dist, 0, 1), dist


def nearest_param(h, w, pts):
    """For every pixel, the arc-length fraction (0..1) of the nearest point of the polyline."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    best = np.full((h, w), np.inf)
    par = np.zeros((h, w))
    seg = [np.hypot(y1 - y0, x1 - x0) for (y0, x0), (y1, x1) in zip(pts[:-1], pts[1:])]
    total, acc = max(sum(seg), 1e-9), 0.0
    for ((y0, x0), (y1, x1)), s in zip(zip(pts[:-1], pts[1:]), seg):
        dy, dx = y1 - y0, x1 - x0
        t = np.clip(((yy - y0) * dy + (xx - x0) * dx) / max(s * s, 1e-9), 0, 1)
        d = np.hypot(yy - (y0 + t * dy), xx - (x0 + t * dx))
        closer = d < best
        best[closer] = d[closer]
        par[closer] = (acc + t[closer] * s) / total
        acc += s
    return par


def scratch(rng, h, w):
    diag = np.hypot(h, w)
    length = rng.uniform(0.35, 0.95) * diag
    cy, cx = rng.uniform(0.1, 0.9) * h, rng.uniform(0.1, 0.9) * w
    # Mostly vertical (film runs), some at any angle.
    theta = rng.normal(np.pi / 2, 0.15) if rng.random() < 0.6 else rng.uniform(0, np.pi)
    d = np.array([np.sin(theta), np.cos(theta)])
    p0, p2 = np.array([cy, cx]) - d * length / 2, np.array([cy, cx]) + d * length / 2
    bow = rng.uniform(-0.04, 0.04) * length
    p1 = (p0 + p2) / 2 + np.array([-d[1], d[0]]) * bow * 2
    t = np.linspace(0, 1, 40)[:, None]
    pts = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t ** 2 * p2
    width = rng.choice([1, 1, 1.5, 2, 2, 3, 4])
    return pts, float(width)


def jagged_path(rng, h, w):
    horizontal = rng.random() < 0.5
    n = 160
    if horizontal:
        y, x, ang = rng.uniform(0.25, 0.75) * h, -5.0, rng.normal(0, 0.2)
    else:
        y, x, ang = -5.0, rng.uniform(0.25, 0.75) * w, np.pi / 2 + rng.normal(0, 0.2)
    base = ang
    step = (max(h, w) + 10) / n
    pts = []
    for _ in range(n):
        pts.append((y, x))
        ang = base + 0.85 * (ang - base) + rng.normal(0, 0.25)
        y += np.sin(ang) * step
        x += np.cos(ang) * step
    return np.array(pts)


def damage(x: np.ndarray, seed: int):
    rng = np.random.default_rng(seed)
    h, w = x.shape[:2]
    colour = x.ndim == 3
    xf = x.astype(np.float64)
    # 1. fading
    c = 3 if colour else 1
    gain = rng.uniform(0.80, 0.92, c)
    offset = rng.uniform(10, 25, c)
    faded = xf * gain + offset if colour else xf * gain[0] + offset[0]
    img = faded.copy()
    drawn = np.zeros((h, w), bool)
    log = {"fade": {"gain": gain.round(3).tolist(), "offset": offset.round(1).tolist()}, "scratches": [], "dust": 0, "tear": False}

    def paint(alpha, target):
        nonlocal img
        a = alpha[..., None] if colour else alpha
        img = img * (1 - a) + target * a

    # 2. scratches
    for _ in range(rng.integers(3, 7)):
        pts, width = scratch(rng, h, w)
        cov, _ = segment_coverage(h, w, pts, width)
        par = nearest_param(h, w, pts)
        phase, freq = rng.uniform(0, 2 * np.pi), rng.uniform(1, 3)
        strength = 0.55 + 0.45 * (0.5 + 0.5 * np.sin(2 * np.pi * freq * par + phase))
        light = rng.random() < 0.55
        target = rng.uniform(215, 250) if light else rng.uniform(15, 50)
        paint(cov * strength, target)
        drawn |= cov >= 0.5
        log["scratches"].append({"width": width, "light": bool(light),
                                 "length": round(float(np.sum(np.hypot(*np.diff(pts, axis=0).T))), 1)})
    # 3. dust and spots
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    ndust = int(rng.integers(12, 31))
    for _ in range(ndust):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        r = rng.uniform(0.8, 3.0)
        e = rng.uniform(1, 2) if rng.random() < 0.3 else 1.0
        a = rng.uniform(0, np.pi)
        u = (yy - cy) * np.cos(a) + (xx - cx) * np.sin(a)
        v = -(yy - cy) * np.sin(a) + (xx - cx) * np.cos(a)
        d = np.sqrt((u / e) ** 2 + v ** 2)
        cov = np.clip(r + 0.5 - d, 0, 1)
        target = rng.uniform(210, 245) if rng.random() < 0.5 else rng.uniform(10, 45)
        paint(cov * rng.uniform(0.75, 1.0), target)
        drawn |= cov >= 0.5
    log["dust"] = ndust
    # 4. a tear or crease with its shadow
    if rng.random() < 0.5:
        pts = jagged_path(rng, h, w)
        width = float(rng.choice([2, 2.5, 3]))
        cov, dist = segment_coverage(h, w, pts, width)
        # shadow: the side towards +normal of the overall direction, 1-2 px beyond the white
        sw = float(rng.uniform(1, 2))
        d0 = pts[-1] - pts[0]
        nrm = np.array([-d0[1], d0[0]]) / max(np.hypot(*d0), 1e-9)
        par = nearest_param(h, w, pts)
        idx = np.clip((par * (len(pts) - 1)).round().astype(int), 0, len(pts) - 1)
        side = (yy - pts[idx, 0]) * nrm[0] + (xx - pts[idx, 1]) * nrm[1]
        shadow = np.clip(np.minimum(dist - width / 2 + 0.5, width / 2 + sw + 0.5 - dist), 0, 1) * (side > 0)
        dark = rng.uniform(0.35, 0.55)
        a = shadow[..., None] if colour else shadow
        img = img * (1 - dark * a)
        paint(cov, rng.uniform(225, 250))
        drawn |= (cov >= 0.5) | (shadow >= 0.5)
        log["tear"] = True
    # Visible: luminance moved by >= VISIBLE levels from the faded photo.
    moved = np.abs(luma(img) - luma(faded))
    truth = drawn & (moved >= VISIBLE)
    undecided = drawn & ~truth
    # 5. grain
    grain = ndi.gaussian_filter(rng.normal(0, 1, (h, w)), 0.6)
    grain *= 4.0 / grain.std()
    if colour:
        img = img + grain[..., None] + rng.normal(0, 1.5, img.shape)
    else:
        img = img + grain + rng.normal(0, 1.5, img.shape)
    img = np.clip(np.round(img), 0, 255).astype(np.uint8)
    # 6. JPEG
    q = int(rng.integers(80, 91))
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=q)
    out = np.asarray(Image.open(io.BytesIO(buf.getvalue())))
    log["jpeg_quality"] = q
    mask = np.where(truth, 255, np.where(undecided, 128, 0)).astype(np.uint8)
    return out, mask, log


def band(truth: np.ndarray, radius: int = 2) -> np.ndarray:
    return ndi.binary_dilation(truth, structure=np.ones((2 * radius + 1, 2 * radius + 1), bool)) & ~truth


def score(pred: np.ndarray, mask: np.ndarray) -> dict:
    truth = mask == 255
    ignore = band(truth) | (mask == 128)
    tp = int(np.sum(pred & truth))
    fn = int(np.sum(~pred & truth))
    fp = int(np.sum(pred & ~truth & ~ignore))
    return {"tp": tp, "fp": fp, "fn": fn, "recall": tp / max(tp + fn, 1), "precision": tp / max(tp + fp, 1),
            "iou": tp / max(tp + fp + fn, 1), "coverage": float(pred.mean())}


def old_detector(L8: np.ndarray) -> np.ndarray:
    """The top-hat detector restore used before (ImageOps.defectMask, threshold 0.12, 5 x 5, dilation 1)."""
    from skimage.morphology import black_tophat, white_tophat
    L = L8.astype(np.float32) / 255
    fp = np.ones((5, 5))
    raw = np.maximum(white_tophat(L, fp), black_tophat(L, fp)) > np.float32(0.12)
    return ndi.binary_dilation(raw, np.ones((3, 3), bool))


def measure(cases: list, out: Path = OUT) -> dict:
    """Old and new detector on every damaged photo and its clean original (written into cases.json)."""
    import defect_detector
    means = {}
    for case in cases:
        name = case["photo"]
        gray = lambda suffix: np.asarray(Image.open(out / f"{name}{suffix}.png").convert("L"))
        mask = np.asarray(Image.open(out / f"{name}_mask.png"))
        for label, fn in (("old", old_detector), ("new", lambda L: defect_detector.detect(L, THRESHOLD_LEVELS))):
            s = score(fn(gray("_damaged")), mask)
            clean = fn(gray(""))
            s["clean_pixels"] = int(clean.sum())
            s["clean_fraction"] = float(clean.mean())
            case[label] = {k: (round(v, 5) if isinstance(v, float) else v) for k, v in s.items()}
            print(f"  {label} {name:10s} R {s['recall']:.3f} P {s['precision']:.3f} IoU {s['iou']:.3f} "
                  f"mask {100 * s['coverage']:.2f} % clean {100 * s['clean_fraction']:.3f} %")
    for label in ("old", "new"):
        means[label] = {k: round(float(np.mean([c[label][k] for c in cases])), 5)
                        for k in ("recall", "precision", "iou", "coverage", "clean_fraction")}
        means[label]["clean_fraction_max"] = round(max(c[label]["clean_fraction"] for c in cases), 5)
        print(label, means[label])
    return means


def main() -> None:
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("--held-out", action="store_true", help="the held-out photos (HELD_OUT) with their own seeds")
    ap.add_argument("--side", type=int, default=SIDE, help="long side in px (held-out: 320 or 512)")
    ap.add_argument("--out", type=Path, help="output folder (default: Tests/Fixtures/defects, or defects-held-out-<side>)")
    args = ap.parse_args()
    photos, seed = (HELD_OUT, HELD_OUT_SEEDS[args.side]) if args.held_out else (PHOTOS, 1500)
    out = args.out or (OUT.parent / f"defects-held-out-{args.side}" if args.held_out else OUT)
    out.mkdir(parents=True, exist_ok=True)
    cases = []
    for i, name in enumerate(photos):
        clean = load(name, args.side)
        damaged, mask, log = damage(clean, seed + i)
        Image.fromarray(clean).save(out / f"{name}.png", optimize=True)
        Image.fromarray(damaged).save(out / f"{name}_damaged.png", optimize=True)
        Image.fromarray(mask).save(out / f"{name}_mask.png", optimize=True)
        frac = float((mask == 255).mean())
        cases.append({"photo": name, "width": clean.shape[1], "height": clean.shape[0],
                      "channels": 3 if clean.ndim == 3 else 1, "defect_fraction": round(frac, 5), "damage": log})
        print(name, clean.shape, f"defects {100 * frac:.2f} %", log["jpeg_quality"], len(log["scratches"]), log["dust"], log["tear"])
    means = measure(cases, out)
    (out / "cases.json").write_text(json.dumps({"generator": "tools/reference/make_defect_eval.py", "side": args.side,
                                                "visible_levels": VISIBLE, "band": 2,
                                                "threshold_levels": THRESHOLD_LEVELS, "means": means,
                                                "cases": cases}, indent=1) + "\n")


if __name__ == "__main__":
    main()
