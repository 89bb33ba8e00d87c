#!/usr/bin/env python3
"""Reference fixtures for DarkroomPipeline/ImageOps (Tests/Fixtures/imageops/).

Needs pillow, opencv-python-headless, numpy, scikit-image (any recent versions; the versions used
are written to manifest.json). Run:  python make_imageops_fixtures.py [--out DIR]

Every array is written as raw bytes (uint8, row-major, interleaved HWC for colour images; binary
masks are np.packbits'd, big-endian bit order). Float references too large to store are written as
FNV-1a-64 hashes of their float32 bit patterns / uint8 bytes. Everything is listed in manifest.json.

References:
  * resize  : PIL Image.resize(size, Image.LANCZOS) -- the real library.
  * blur    : A1111 processing.py mask blur -- cv2.GaussianBlur (kernel_size = 2*int(2.5*s+0.5)+1),
              x pass then y pass -- the real cv2.
  * crop    : Python ports (below) of A1111 modules/masking.py get_crop_region_v2 + expand_crop_region
              and diffusers VaeImageProcessor.get_crop_region (neither package is installable here
              without a large dependency tree; the ports are line-for-line and use PIL getbbox).
  * fill    : A1111 modules/masking.py fill(), which is plain PIL -- reproduced below and run on PIL.
  * defects : skimage.morphology.white_tophat / black_tophat (float32) + threshold + dilation.
  * levels  : numpy.percentile (linear), PIL convert("L").
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
import cv2
import PIL
import skimage
from PIL import Image, ImageDraw, ImageFilter, ImageOps
from skimage import data, morphology


def fnv1a64(b: bytes) -> str:
    h = 0xCBF29CE484222325
    for byte in b:
        h ^= byte
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def fnv_fast(arr: np.ndarray) -> str:
    """FNV-1a-64 over the raw bytes (vectorised per chunk would be nicer; arrays here are small)."""
    return fnv1a64(np.ascontiguousarray(arr).tobytes())


class Writer:
    def __init__(self, out: Path):
        self.out = out
        out.mkdir(parents=True, exist_ok=True)
        self.manifest = {}

    def raw(self, name, arr):
        arr = np.ascontiguousarray(arr)
        assert arr.dtype == np.uint8, arr.dtype
        (self.out / name).write_bytes(arr.tobytes())
        return name

    def bits(self, name, mask):
        (self.out / name).write_bytes(np.packbits(mask.astype(bool).ravel()).tobytes())
        return name


# ----------------------------------------------------------------------------------------------
# 1. Lanczos resize
# ----------------------------------------------------------------------------------------------
def make_resize(w: Writer, cam, astro):
    cases = []
    w.raw("camera512.u8", cam)                      # 512x512 L, shared by several sections
    crops = {
        "astro64": astro[100:164, 180:244],          # 64x64 RGB (face)
        "astro64x48": astro[300:348, 50:114],        # 64 wide, 48 high
        "astro37x23": astro[20:43, 400:437],         # 37 wide, 23 high
    }
    for k, v in crops.items():
        w.raw(f"{k}.u8", v)
    rgb_cases = [("astro64", 48, 48), ("astro64x48", 96, 72), ("astro37x23", 64, 64), ("astro64", 40, 70)]
    for src, ow, oh in rgb_cases:
        a = crops[src]
        out = np.asarray(Image.fromarray(a).resize((ow, oh), Image.LANCZOS))
        case = dict(input=f"{src}.u8", inW=a.shape[1], inH=a.shape[0], channels=3, outW=ow, outH=oh)
        if ow * oh > 3000:      # fixture budget: large outputs as hash + sum
            case.update(expectedHash=fnv_fast(out), expectedSum=int(out.astype(np.int64).sum()))
        else:
            case["expected"] = w.raw(f"resize_{src}_{ow}x{oh}.u8", out)
        cases.append(case)
    # L cases: crops (x, y, w, h) of camera512
    l_cases = [((200, 150, 64, 64), 48, 48), ((100, 300, 64, 48), 96, 72), ((260, 260, 37, 23), 64, 64)]
    for (x, y, cw, ch), ow, oh in l_cases:
        a = cam[y:y + ch, x:x + cw]
        out = np.asarray(Image.fromarray(a).resize((ow, oh), Image.LANCZOS))
        name = f"resize_cam_{x}_{y}_{cw}x{ch}_{ow}x{oh}.u8"
        w.raw(name, out)
        cases.append(dict(input="camera512.u8", crop=[x, y, cw, ch], inW=cw, inH=ch, channels=1,
                          outW=ow, outH=oh, expected=name))
    # Full 512x512 -> 488x488 and 512 -> 700x300: stored as hash + per-row hashes.
    for ow, oh in [(488, 488), (700, 300)]:
        out = np.asarray(Image.fromarray(cam).resize((ow, oh), Image.LANCZOS))
        # Pillow <= 12 always ran the horizontal pass first; two resizes reproduce that order exactly.
        legacy = np.asarray(Image.fromarray(cam).resize((ow, 512), Image.LANCZOS).resize((ow, oh), Image.LANCZOS))
        cases.append(dict(input="camera512.u8", inW=512, inH=512, channels=1, outW=ow, outH=oh,
                          expectedHash=fnv_fast(out), expectedSum=int(out.astype(np.int64).sum()),
                          legacyHash=fnv_fast(legacy)))
    w.manifest["resize"] = cases


# ----------------------------------------------------------------------------------------------
# 2. A1111 mask blur
# ----------------------------------------------------------------------------------------------
def a1111_mask_blur(np_mask, blur_x, blur_y):
    if blur_x > 0:
        kernel_size = 2 * int(2.5 * blur_x + 0.5) + 1
        np_mask = cv2.GaussianBlur(np_mask, (kernel_size, 1), blur_x)
    if blur_y > 0:
        kernel_size = 2 * int(2.5 * blur_y + 0.5) + 1
        np_mask = cv2.GaussianBlur(np_mask, (1, kernel_size), blur_y)
    return np_mask


def blur_masks():
    rect = np.zeros((64, 64), np.uint8)
    rect[16:40, 12:50] = 255
    img = Image.new("L", (64, 64), 0)
    d = ImageDraw.Draw(img)
    d.ellipse((4, 8, 32, 28), fill=255)
    d.polygon([(40, 0), (63, 16), (56, 48), (36, 36)], fill=255)   # touches top/right border
    d.line((8, 56, 56, 60), fill=255, width=3)
    d.rectangle((0, 40, 5, 63), fill=255)                           # touches left/bottom border
    return {"rect": rect, "irregular": np.asarray(img)}


def make_blur(w: Writer):
    cases = []
    for mname, m in blur_masks().items():
        w.raw(f"blurmask_{mname}.u8", m)
        for s in [4, 1, 10, 2.5]:
            out = a1111_mask_blur(m.copy(), s, s)
            cases.append(dict(input=f"blurmask_{mname}.u8", width=64, height=64, sigma=s,
                              expectedHash=fnv_fast(out), expectedSum=int(out.astype(np.int64).sum())))
    # Asymmetric blur_x / blur_y on the irregular mask.
    m = blur_masks()["irregular"]
    out = a1111_mask_blur(m.copy(), 3, 7)
    cases.append(dict(input="blurmask_irregular.u8", width=64, height=64, sigmaX=3, sigmaY=7,
                      expectedHash=fnv_fast(out), expectedSum=int(out.astype(np.int64).sum())))
    # Random 8-bit content (not just a 0/255 mask) exercises every kernel tap's rounding.
    rnd = np.random.default_rng(5).integers(0, 256, (64, 64)).astype(np.uint8)
    w.raw("blur_random.u8", rnd)
    for s in [4, 10]:
        out = a1111_mask_blur(rnd.copy(), s, s)
        cases.append(dict(input="blur_random.u8", width=64, height=64, sigma=s,
                          expectedHash=fnv_fast(out), expectedSum=int(out.astype(np.int64).sum())))
    w.manifest["blur"] = cases


# ----------------------------------------------------------------------------------------------
# 3. Crop regions (ports)
# ----------------------------------------------------------------------------------------------
def a1111_get_crop_region_v2(mask: Image.Image, pad=0):
    box = mask.getbbox()
    if box:
        x1, y1, x2, y2 = box
        return (max(x1 - pad, 0), max(y1 - pad, 0), min(x2 + pad, mask.size[0]),
                min(y2 + pad, mask.size[1])) if pad else box
    return None


def a1111_expand_crop_region(crop_region, processing_width, processing_height, image_width, image_height):
    x1, y1, x2, y2 = crop_region
    ratio_crop_region = (x2 - x1) / (y2 - y1)
    ratio_processing = processing_width / processing_height
    if ratio_crop_region > ratio_processing:
        desired_height = (x2 - x1) / ratio_processing
        desired_height_diff = int(desired_height - (y2 - y1))
        y1 -= desired_height_diff // 2
        y2 += desired_height_diff - desired_height_diff // 2
        if y2 >= image_height:
            diff = y2 - image_height
            y2 -= diff
            y1 -= diff
        if y1 < 0:
            y2 -= y1
            y1 -= y1
        if y2 >= image_height:
            y2 = image_height
    else:
        desired_width = (y2 - y1) * ratio_processing
        desired_width_diff = int(desired_width - (x2 - x1))
        x1 -= desired_width_diff // 2
        x2 += desired_width_diff - desired_width_diff // 2
        if x2 >= image_width:
            diff = x2 - image_width
            x2 -= diff
            x1 -= diff
        if x1 < 0:
            x2 -= x1
            x1 -= x1
        if x2 >= image_width:
            x2 = image_width
    return x1, y1, x2, y2


def diffusers_get_crop_region(mask_image: Image.Image, width, height, pad=0):
    mask_image = mask_image.convert("L")
    mask = np.array(mask_image)
    h, w = mask.shape
    crop_left = 0
    for i in range(w):
        if not (mask[:, i] == 0).all():
            break
        crop_left += 1
    crop_right = 0
    for i in reversed(range(w)):
        if not (mask[:, i] == 0).all():
            break
        crop_right += 1
    crop_top = 0
    for i in range(h):
        if not (mask[i] == 0).all():
            break
        crop_top += 1
    crop_bottom = 0
    for i in reversed(range(h)):
        if not (mask[i] == 0).all():
            break
        crop_bottom += 1
    x1, y1, x2, y2 = (int(max(crop_left - pad, 0)), int(max(crop_top - pad, 0)),
                      int(min(w - crop_right + pad, w)), int(min(h - crop_bottom + pad, h)))
    ratio_crop_region = (x2 - x1) / (y2 - y1)
    ratio_processing = width / height
    if ratio_crop_region > ratio_processing:
        desired_height = (x2 - x1) / ratio_processing
        desired_height_diff = int(desired_height - (y2 - y1))
        y1 -= desired_height_diff // 2
        y2 += desired_height_diff - desired_height_diff // 2
        if y2 >= mask_image.height:
            diff = y2 - mask_image.height
            y2 -= diff
            y1 -= diff
        if y1 < 0:
            y2 -= y1
            y1 -= y1
        if y2 >= mask_image.height:
            y2 = mask_image.height
    else:
        desired_width = (y2 - y1) * ratio_processing
        desired_width_diff = int(desired_width - (x2 - x1))
        x1 -= desired_width_diff // 2
        x2 += desired_width_diff - desired_width_diff // 2
        if x2 >= mask_image.width:
            diff = x2 - mask_image.width
            x2 -= diff
            x1 -= diff
        if x1 < 0:
            x2 -= x1
            x1 -= x1
        if x2 >= mask_image.width:
            x2 = mask_image.width
    return x1, y1, x2, y2


def make_crop(w: Writer):
    W, H = 120, 90
    masks = {}
    m = Image.new("L", (W, H), 0); ImageDraw.Draw(m).ellipse((40, 30, 70, 50), fill=255); masks["blob"] = m
    m = Image.new("L", (W, H), 0); ImageDraw.Draw(m).rectangle((90, 60, 119, 89), fill=200); masks["corner"] = m
    m = Image.new("L", (W, H), 0); m.putpixel((57, 33), 1); masks["tiny"] = m
    m = Image.new("L", (W, H), 0); ImageDraw.Draw(m).rectangle((5, 40, 110, 44), fill=255); masks["strip"] = m
    m = Image.new("L", (W, H), 0); ImageDraw.Draw(m).rectangle((60, 0, 62, 89), fill=255); masks["column"] = m
    m = Image.new("L", (W, H), 0); ImageDraw.Draw(m).rectangle((0, 0, 5, 3), fill=255); masks["topleft"] = m
    masks["empty"] = Image.new("L", (W, H), 0)
    cases = []
    for name, m in masks.items():
        w.bits(f"cropmask_{name}.bits", np.asarray(m) > 0)
        for pad in [0, 8, 32]:
            for pw, ph in [(512, 512), (512, 768), (768, 512), (1024, 576)]:
                r = a1111_get_crop_region_v2(m, pad)
                a = list(a1111_expand_crop_region(r, pw, ph, W, H)) if r else None
                raw = list(r) if r else None
                dif = list(diffusers_get_crop_region(m, pw, ph, pad)) if r else None
                cases.append(dict(mask=f"cropmask_{name}.bits", width=W, height=H, pad=pad, procW=pw,
                                  procH=ph, a1111Crop=raw, a1111Expanded=a, diffusers=dif))
    w.manifest["crop"] = cases


# ----------------------------------------------------------------------------------------------
# 4. A1111 masked_content "fill" (modules/masking.py fill, plain PIL)
# ----------------------------------------------------------------------------------------------
def a1111_fill(image, mask):
    image_mod = Image.new('RGBA', (image.width, image.height))
    image_masked = Image.new('RGBa', (image.width, image.height))
    image_masked.paste(image.convert("RGBA").convert("RGBa"), mask=ImageOps.invert(mask.convert('L')))
    image_masked = image_masked.convert('RGBa')
    for radius, repeats in [(256, 1), (64, 1), (16, 2), (4, 4), (2, 2), (0, 1)]:
        blurred = image_masked.filter(ImageFilter.GaussianBlur(radius)).convert('RGBA')
        for _ in range(repeats):
            image_mod.alpha_composite(blurred)
    return image_mod.convert("RGB")


def make_fill(w: Writer, astro):
    cases = []
    # Image 1: 64x64 face crop, binary blob mask.
    img1 = astro[100:164, 180:244]
    m1 = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(m1).ellipse((18, 20, 44, 50), fill=255)
    # Image 2: 64x48 crop, A1111-blurred (grey) mask, as processing.py passes latent_mask.
    img2 = astro[300:348, 50:114]
    m2 = Image.new("L", (64, 48), 0)
    ImageDraw.Draw(m2).rectangle((10, 8, 40, 30), fill=255)
    m2 = Image.fromarray(a1111_mask_blur(np.asarray(m2).copy(), 4, 4))
    for name, img, m in [("fill1", img1, m1), ("fill2", img2, m2)]:
        out = np.asarray(a1111_fill(Image.fromarray(img), m))
        w.raw(f"{name}_mask.u8", np.asarray(m))
        w.raw(f"{name}_expected.u8", out)
        src = "astro64.u8" if name == "fill1" else "astro64x48.u8"
        cases.append(dict(input=src, width=img.shape[1], height=img.shape[0], mask=f"{name}_mask.u8",
                          expected=f"{name}_expected.u8"))
    # PIL GaussianBlur alone on an RGBa image (unit check for the box blur).
    rgba = np.dstack([img1, np.full((64, 64), 255, np.uint8)])
    for r in [1, 2, 4, 16, 256, 0.7]:
        out = np.asarray(Image.fromarray(rgba, "RGBA").filter(ImageFilter.GaussianBlur(r)))
        cases.append(dict(pilBlur=True, input="astro64.u8", width=64, height=64, radius=r,
                          expectedHash=fnv_fast(out[..., :3]), expectedSum=int(out[..., :3].astype(np.int64).sum())))
    w.manifest["fill"] = cases


# ----------------------------------------------------------------------------------------------
# 5. Defects
# ----------------------------------------------------------------------------------------------
def make_defects(w: Writer, chelsea):
    # A soft "old print": a real photo (skimage chelsea, grey, 256x256 crop) blurred like an aged,
    # slightly out-of-focus print (PIL GaussianBlur 1.5); the scratches and dust drawn on it are sharp.
    grey = np.asarray(Image.fromarray(chelsea).convert("L"))[20:276, 100:356]
    clean = np.asarray(Image.fromarray(grey).filter(ImageFilter.GaussianBlur(1.5))).copy()
    w.raw("defect_clean.u8", clean)
    img = Image.fromarray(clean.copy())
    drawn = Image.new("L", img.size, 0)
    rng = np.random.default_rng(1234)
    dd = ImageDraw.Draw(drawn)
    bright = Image.new("L", img.size, 0)
    dark = Image.new("L", img.size, 0)
    db, dk = ImageDraw.Draw(bright), ImageDraw.Draw(dark)
    # Scratches: long thin lines, 1-3 px wide.
    for (x0, y0, x1, y1, width, kind) in [(10, 0, 60, 255, 1, "b"), (200, 0, 150, 255, 2, "b"),
                                         (0, 40, 255, 70, 1, "d"), (0, 200, 255, 180, 2, "d"),
                                         (120, 10, 250, 140, 3, "b"), (30, 240, 110, 100, 1, "b")]:
        (db if kind == "b" else dk).line((x0, y0, x1, y1), fill=255, width=width)
    # Dust: small specks, radius 1-2.
    for i in range(60):
        cx, cy = rng.integers(4, 252, size=2)
        r = int(rng.integers(1, 3))
        (db if i % 2 == 0 else dk).ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
    b = np.asarray(bright) > 0
    k = (np.asarray(dark) > 0) & ~b
    damaged = clean.astype(np.int32)
    damaged[b] = np.maximum(damaged[b] + 120, 235)
    damaged[k] = np.minimum(damaged[k] - 120, 25)
    damaged = np.clip(damaged, 0, 255).astype(np.uint8)
    drawn_mask = b | k
    visible = drawn_mask & (np.abs(damaged.astype(int) - clean.astype(int)) >= 40)
    w.bits("defect_drawn.bits", drawn_mask)
    w.bits("defect_visible.bits", visible)
    w.raw("defect_values.u8", damaged[drawn_mask])        # row-major order of drawn pixels
    lum = damaged.astype(np.float32) / np.float32(255)
    fp = np.ones((5, 5), bool)
    wth = morphology.white_tophat(lum, fp)
    bth = morphology.black_tophat(lum, fp)
    assert wth.dtype == np.float32 and bth.dtype == np.float32
    thr = np.float32(0.12)
    raw = np.maximum(wth, bth) > thr
    mask = morphology.dilation(raw, np.ones((3, 3), bool))
    w.bits("defect_expected_mask.bits", mask)
    w.manifest["defects"] = dict(
        clean="defect_clean.u8", width=256, height=256, drawn="defect_drawn.bits", visible="defect_visible.bits",
        values="defect_values.u8", whiteTopHatHash=fnv_fast(wth), blackTopHatHash=fnv_fast(bth),
        whiteTopHatSum=float(wth.astype(np.float64).sum()), blackTopHatSum=float(bth.astype(np.float64).sum()),
        footprint=5, threshold=0.12, dilation=1, expectedMask="defect_expected_mask.bits",
        drawnCount=int(drawn_mask.sum()), visibleCount=int(visible.sum()))


# ----------------------------------------------------------------------------------------------
# 6. Levels / grayscale
# ----------------------------------------------------------------------------------------------
def make_levels(w: Writer, astro):
    base = astro[100:164, 180:244].astype(np.float64)
    faded = base * 0.45 + np.array([70.0, 55.0, 40.0])              # washed out + warm cast
    faded = np.clip(np.round(faded), 0, 255).astype(np.uint8)
    w.raw("levels_faded.u8", faded)
    lo_q, hi_q = 0.5, 99.5
    per = []
    out = np.empty_like(faded)
    for c in range(3):
        v = faded[..., c]
        lo, hi = np.percentile(v, lo_q), np.percentile(v, hi_q)
        per.append([float(lo), float(hi)])
        out[..., c] = np.clip(np.round((v.astype(np.float64) - lo) * 255.0 / (hi - lo)), 0, 255).astype(np.uint8)

    lum = np.asarray(Image.fromarray(faded).convert("L"))
    llo, lhi = np.percentile(lum, lo_q), np.percentile(lum, hi_q)
    out2 = np.clip(np.round((faded.astype(np.float64) - llo) * 255.0 / (lhi - llo)), 0, 255).astype(np.uint8)

    w.raw("gray_astro64.u8", np.asarray(Image.fromarray(astro[100:164, 180:244]).convert("L")))
    # Float32 percentile exactness on an odd-length array.
    rng = np.random.default_rng(7)
    fl = rng.random(301, dtype=np.float32) * np.float32(0.8) + np.float32(0.1)
    qs = [0.5, 99.5, 37.3, 0.0, 100.0, 50.0]
    w.manifest["levels"] = dict(
        input="levels_faded.u8", width=64, height=64, low=lo_q, high=hi_q, perChannel=per,
        perChannelHash=fnv_fast(out), luminance=[float(llo), float(lhi)],
        luminanceHash=fnv_fast(out2), gray="gray_astro64.u8",
        floatValues=[float(x) for x in fl], floatQuantiles=qs,
        floatPercentiles=[float(np.percentile(fl, q)) for q in qs],
        u8Percentiles=[float(np.percentile(faded[..., 0], q)) for q in qs])


def main():
    ap = argparse.ArgumentParser()
    here = Path(__file__).resolve()
    root = next((p for p in here.parents if (p / "Package.swift").exists()), here.parent.parent)
    ap.add_argument("--out", type=Path, default=root / "Tests/Fixtures/imageops")
    args = ap.parse_args()
    w = Writer(args.out)
    cam = data.camera()
    astro = data.astronaut()
    make_resize(w, cam, astro)
    make_blur(w)
    make_crop(w)
    make_fill(w, astro)
    make_defects(w, data.chelsea())
    make_levels(w, astro)
    w.manifest["versions"] = dict(python=sys.version.split()[0], pillow=PIL.__version__, opencv=cv2.__version__,
                                  numpy=np.__version__, skimage=skimage.__version__)
    (args.out / "manifest.json").write_text(json.dumps(w.manifest, sort_keys=True, separators=(',', ':')) + "\n")
    total = sum(p.stat().st_size for p in args.out.iterdir())
    print(f"wrote {args.out} ({total} bytes)")


if __name__ == "__main__":
    main()
