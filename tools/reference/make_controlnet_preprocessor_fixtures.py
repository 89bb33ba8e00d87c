#!/usr/bin/env python3
"""Reference fixtures for the ControlNet preprocessors (Tests/Fixtures/controlnet_preprocessors/).

Needs opencv-python-headless, pillow, numpy, scikit-image, torch, diffusers and safetensors (the versions
used are written to cases.json). Run from anywhere:

    ~/venv/bin/python tools/reference/make_controlnet_preprocessor_fixtures.py [--out DIR]

References (the real libraries, no ports):
  * canny         : cv2.Canny(img, low, high) -- aperture 3, L2gradient False -- on the RGB uint8 HWC image,
                    as sd-webui-controlnet's annotator/canny does (gray inputs made 3-channel first, as its
                    HWC3 does). Expected edge maps are written as "L" PNGs (0/255).
  * tile_resample : sd-webui-controlnet scripts/processor.py tile_resample: identity when the rate is < 1.1,
                    else cv2.resize(img, (int(W / rate), int(H / rate)), interpolation=cv2.INTER_AREA).
                    Written as RGB PNGs.
  * inpaint       : diffusers' make_inpaint_condition (the ControlNet inpaint docs): image / 255 with
                    pixels whose mask.convert("L") / 255 > 0.5 set to -1; float32 [1, 3, H, W].
  * prepare       : diffusers' ControlNet pipelines' prepare_image, i.e.
                    VaeImageProcessor(vae_scale_factor=8, do_convert_rgb=True, do_normalize=False)
                    .preprocess(image, height, width): a PIL control image is resized with PIL LANCZOS and
                    scaled to [0, 1]; a tensor (the inpaint condition) is resized with
                    torch.nn.functional.interpolate (mode "nearest").

The script checks that cv2 gives the same canny / INTER_AREA result with 1 thread and with the default
thread count before writing anything. Files: inputs/*.png, canny/*.png, tile/*.png, prepare/*.png, expected.safetensors
(float32, sorted header), cases.json. Tiny inputs (1x1 ... 3x2) are stored inline in cases.json.
"""
import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import PIL
import skimage
import torch
import diffusers
import safetensors
from PIL import Image
from safetensors.numpy import save_file
from skimage import data
from diffusers.image_processor import VaeImageProcessor


def hwc3(x):
    """sd-webui-controlnet annotator/util.py HWC3 for uint8 1- or 3-channel arrays."""
    if x.ndim == 2:
        x = x[:, :, None]
    if x.shape[2] == 1:
        return np.concatenate([x, x, x], axis=2)
    assert x.shape[2] == 3
    return x


def canny_ref(img, low, high):
    img = hwc3(img)
    cv2.setNumThreads(1)
    one = cv2.Canny(img, low, high)
    cv2.setNumThreads(-1)
    many = cv2.Canny(img, low, high)
    assert np.array_equal(one, many), "cv2.Canny differs between 1 and many threads"
    return one


def tile_ref(img, rate):
    """scripts/processor.py tile_resample (the extension), with the one documented difference: a side that
    int(side / rate) makes 0 is 1 here (cv2.resize refuses a 0 size)."""
    img = hwc3(img)
    if rate < 1.1:
        return img
    h, w, _ = img.shape
    h2 = max(1, int(float(h) / float(rate)))
    w2 = max(1, int(float(w) / float(rate)))
    cv2.setNumThreads(1)
    one = cv2.resize(img, (w2, h2), interpolation=cv2.INTER_AREA)
    cv2.setNumThreads(-1)
    many = cv2.resize(img, (w2, h2), interpolation=cv2.INTER_AREA)
    assert np.array_equal(one, many), "cv2.resize INTER_AREA differs between 1 and many threads"
    return one


def make_inpaint_condition(image, image_mask):
    """diffusers docs (ControlNet inpaint, control_v11p_sd15_inpaint), verbatim semantics."""
    image = np.array(image.convert("RGB")).astype(np.float32) / 255.0
    image_mask = np.array(image_mask.convert("L")).astype(np.float32) / 255.0
    assert image.shape[0:2] == image_mask.shape[0:2]
    image[image_mask > 0.5] = -1.0
    image = np.expand_dims(image, 0).transpose(0, 3, 1, 2)
    return torch.from_numpy(image)


def main():
    ap = argparse.ArgumentParser()
    here = Path(__file__).resolve()
    root = next((p for p in here.parents if (p / "Package.swift").exists()), here.parent.parent)
    ap.add_argument("--out", type=Path, default=root / "Tests/Fixtures/controlnet_preprocessors")
    args = ap.parse_args()
    out = args.out
    for sub in ["inputs", "canny", "tile"]:
        (out / sub).mkdir(parents=True, exist_ok=True)
        for p in (out / sub).glob("*.png"):
            p.unlink()
    pipelines_inputs = root / "Tests/Fixtures/pipelines/inputs"

    # ---- inputs ------------------------------------------------------------------------------
    inputs = {}   # name -> (relative path from the fixture folder, uint8 array HxW or HxWx3)

    def add_png(name, arr):
        rel = f"inputs/{name}.png"
        Image.fromarray(arr).save(out / rel, optimize=True)
        inputs[name] = (rel, arr)

    for name in ["photo", "photo_ns"]:   # the pipeline fixtures' inputs, read in place
        inputs[name] = (f"../pipelines/inputs/{name}.png",
                        np.asarray(Image.open(pipelines_inputs / f"{name}.png").convert("RGB")))
    add_png("astronaut128", np.asarray(Image.fromarray(data.astronaut()).resize((128, 128), Image.LANCZOS)))
    add_png("coffee128x96", np.asarray(Image.fromarray(data.coffee()).resize((128, 96), Image.LANCZOS)))
    add_png("chelsea97x61", np.asarray(Image.fromarray(data.chelsea()).resize((97, 61), Image.LANCZOS)))
    add_png("camera128", np.asarray(Image.fromarray(data.camera()).resize((128, 128), Image.LANCZOS)))  # "L"
    rng = np.random.default_rng(14)
    add_png("noise33x17", rng.integers(0, 256, size=(17, 33, 3), dtype=np.uint8))
    # Flat areas with exact ties between channels and neighbours (NMS >= / > and channel-max tie-breaks).
    steps = np.zeros((24, 40, 3), np.uint8)
    steps[:, 10:] = (90, 90, 90)
    steps[6:18, 20:30] = (200, 40, 200)
    steps[12:, 33:] = (0, 255, 0)
    add_png("steps40x24", steps)
    tiny = {}
    for (w, h) in [(1, 1), (1, 7), (7, 1), (2, 2), (3, 2)]:
        tiny[f"tiny{w}x{h}"] = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)

    # ---- canny -------------------------------------------------------------------------------
    canny_cases = []
    default = (100, 200)
    thresholds = {
        "astronaut128": [default, (50, 100), (200, 100), (0, 0), (150, 150), (1, 255), (100.5, 200.9),
                         (0, 5000), (255, 255), (20, 40)],
        "camera128": [default, (30, 60)],
        "noise33x17": [default, (400, 800)],
        "steps40x24": [default, (0, 0), (90, 91)],
    }
    for name in inputs:
        for low, high in thresholds.get(name, [default]):
            rel, arr = inputs[name]
            edges = canny_ref(arr, low, high)
            if arr.ndim == 2:   # gray: HWC3 replicates it, and Canny on one plane gives the same map
                assert np.array_equal(edges, cv2.Canny(arr, low, high))
            fname = f"canny/{name}_{low}_{high}.png"
            Image.fromarray(edges).save(out / fname, optimize=True)
            canny_cases.append(dict(input=rel, low=low, high=high, expected=fname,
                                    edges=int((edges == 255).sum())))
    tiny_canny = []
    for name, arr in tiny.items():
        edges = canny_ref(arr, 10, 20)
        tiny_canny.append(dict(name=name, width=arr.shape[1], height=arr.shape[0], pixels=arr.ravel().tolist(),
                               low=10, high=20, expected=edges.ravel().tolist()))

    # ---- tile_resample ----------------------------------------------------------------------
    tile_cases = []
    rates = {
        "astronaut128": [1.5, 2.0, 2.5, 3.0, 4.0, 7.3, 8.0],
        "chelsea97x61": [1.1, 1.3, 2.0, 3.0, 5.5],
        "photo_ns": [1.2, 2.0, 4.0, 6.0],
        "camera128": [2.0, 3.3],
        "noise33x17": [1.7, 3.0, 40.0],
    }
    for name, rs in rates.items():
        rel, arr = inputs[name]
        for rate in rs:
            res = tile_ref(arr, rate)
            fname = f"tile/{name}_{rate}.png"
            Image.fromarray(res).save(out / fname, optimize=True)
            tile_cases.append(dict(input=rel, rate=rate, width=res.shape[1], height=res.shape[0], expected=fname))
    tiny_tile = []
    for name, arr in tiny.items():
        for rate in [1.5, 2.0, 1000.0]:
            res = tile_ref(arr, rate)
            tiny_tile.append(dict(name=name, width=arr.shape[1], height=arr.shape[0], pixels=arr.ravel().tolist(),
                                  rate=rate, outWidth=res.shape[1], outHeight=res.shape[0],
                                  expected=res.ravel().tolist()))

    # ---- inpaint condition -------------------------------------------------------------------
    tensors = {}
    inpaint_cases = []
    # A 64x4 strip of photo.png under a mask ramp 96...159, which crosses the 127/128 threshold.
    ramp = np.tile(np.arange(64, dtype=np.uint8)[None, :] + 96, (4, 1))
    Image.fromarray(ramp).save(out / "inputs/ramp_mask.png", optimize=True)
    Image.fromarray(inputs["photo"][1][30:34]).save(out / "inputs/ramp_image.png", optimize=True)
    pairs = [("photo", "../pipelines/inputs/photo.png", "../pipelines/inputs/mask.png"),
             ("photo_ns", "../pipelines/inputs/photo_ns.png", "../pipelines/inputs/mask_ns.png"),
             ("ramp", "inputs/ramp_image.png", "inputs/ramp_mask.png")]
    for case, img_rel, mask_rel in pairs:
        cond = make_inpaint_condition(Image.open(out / img_rel), Image.open(out / mask_rel))
        tensors[f"inpaint.{case}"] = cond.numpy()
        inpaint_cases.append(dict(name=case, image=img_rel, mask=mask_rel, tensor=f"inpaint.{case}"))

    # ---- prepare_image ------------------------------------------------------------------------
    proc = VaeImageProcessor(vae_scale_factor=8, do_convert_rgb=True, do_normalize=False)
    prepare_cases = []

    (out / "prepare").mkdir(exist_ok=True)
    for p in (out / "prepare").glob("*.png"):
        p.unlink()

    def prepare(case, kind, source, w, h, image):
        t = proc.preprocess(image, height=h, width=w).to(dtype=torch.float32)
        entry = dict(name=case, kind=kind, source=source, width=w, height=h)
        if kind == "levels":
            # A PIL control image comes out as levels / 255 exactly: store the levels as an RGB PNG.
            levels = np.round(t[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
            assert np.array_equal(torch.from_numpy(levels.astype(np.float32) / 255).permute(2, 0, 1)[None], t)
            entry["expected"] = f"prepare/{case}.png"
            Image.fromarray(levels).save(out / entry["expected"], optimize=True)
        else:
            tensors[f"prepare.{case}"] = t.numpy()
            entry["tensor"] = f"prepare.{case}"
        prepare_cases.append(entry)

    # PIL control images (what a user or the extension hands to diffusers): canny maps and tile outputs.
    for fname, w, h in [("canny/astronaut128_100_200.png", 128, 128), ("canny/astronaut128_100_200.png", 96, 80),
                        ("canny/chelsea97x61_100_200.png", 104, 64), ("tile/astronaut128_1.5.png", 128, 128),
                        ("tile/chelsea97x61_2.0.png", 96, 64)]:
        img = Image.fromarray(hwc3(np.asarray(Image.open(out / fname))))
        prepare(f"{Path(fname).stem}_{w}x{h}", "levels", fname, w, h, img)
    # Tensor control images: the inpaint condition, resized with nearest.
    # preprocess rounds the requested size down to multiples of 8 (get_default_height_width): 44x61 -> 40x56.
    for case, w, h in [("photo", 40, 56), ("photo", 44, 61), ("photo_ns", 72, 40), ("photo_ns", 24, 16),
                       ("ramp", 128, 8), ("ramp", 40, 8)]:
        prepare(f"inpaint_{case}_{w}x{h}", "values", f"inpaint.{case}", w, h, torch.from_numpy(tensors[f"inpaint.{case}"]))

    save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in sorted(tensors.items())},
              str(out / "expected.safetensors"))
    manifest = dict(
        canny=canny_cases, cannyTiny=tiny_canny, tile=tile_cases, tileTiny=tiny_tile,
        inpaint=inpaint_cases, prepare=prepare_cases,
        versions=dict(python=sys.version.split()[0], opencv=cv2.__version__, pillow=PIL.__version__,
                      numpy=np.__version__, skimage=skimage.__version__, torch=torch.__version__,
                      diffusers=diffusers.__version__, safetensors=safetensors.__version__))
    (out / "cases.json").write_text(json.dumps(manifest, sort_keys=True, indent=1) + "\n")
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"wrote {out}: {len(canny_cases)} canny, {len(tile_cases)} tile, {len(inpaint_cases)} inpaint, "
          f"{len(prepare_cases)} prepare cases ({total} bytes)")


if __name__ == "__main__":
    main()
