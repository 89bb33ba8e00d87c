#!/usr/bin/env python3
"""A whole-pipeline reference on planes large enough for Winograd (issue 13, part 2).

Writes Tests/Fixtures/pipelines/winograd/ (relative to the repo root):

    inputs/photo256.png   skimage astronaut(), PIL LANCZOS to 256x256, RGB 8-bit
    cases.json            the case with all its settings (the same record as make_pipeline_fixtures.py)
    expected.safetensors  float32, <case>.<role> for image, latents_start, latents_final, init_latents, noise

One case, `i2i_sd2v_lms_256`: StableDiffusionImg2ImgPipeline (diffusers 0.42.1, float32) on the tiny sd2v
model (SD 2.x v-prediction) from Tests/Fixtures/models/sd2v/diffusers, LMSDiscreteScheduler, 10 steps at
strength 0.75 (7 UNet calls), guidance 7.5, seed 1234. At 256 px the latent is 32x32, so the UNet's first
level (32 channels at 32x32) and every VAE level (32 channels at 256..32) meet 3x3 convolutions on planes of
32x32 and more, which Darkroom runs through Winograd by default.

The call itself is make_pipeline_fixtures.run_case (same taps, same untapped re-run checks), with that
script's output folder pointed here. torch.set_num_threads(1), default ATen CPU capability; deterministic.

    ~/venv/bin/python tools/reference/make_winograd_pipeline_fixture.py
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_pipeline_fixtures as pipelines  # noqa: E402  (sets offline mode, one thread, quiet logging)

import diffusers  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from PIL import Image  # noqa: E402

OUT_DIR = pipelines.OUT_DIR / "winograd"
GENERATOR_NAME = "tools/reference/make_winograd_pipeline_fixture.py"
KEPT_ROLES = ("image", "latents_start", "latents_final", "init_latents", "noise")


def main() -> None:
    if OUT_DIR.exists():
        for p in OUT_DIR.iterdir():
            if p.name != "README.md":
                shutil.rmtree(p) if p.is_dir() else p.unlink()
    (OUT_DIR / "inputs").mkdir(parents=True, exist_ok=True)
    from skimage import data
    Image.fromarray(data.astronaut()).convert("RGB").resize((256, 256), Image.LANCZOS).save(OUT_DIR / "inputs" / "photo256.png")

    pipelines.OUT_DIR = OUT_DIR   # run_case reads <OUT_DIR>/inputs/<image>
    c = pipelines.case("i2i_sd2v_lms_256", "img2img", "sd2v", "lms", strength=0.75, image="photo256.png",
                       note="issue 13 part 2: 256 px, so the UNet's 32x32 level and the VAE run Winograd in Darkroom")
    full: dict[str, torch.Tensor] = {}
    rec = pipelines.run_case(c, full, first=False)
    kept = {k: v for k, v in full.items() if k.split(".", 1)[1] in KEPT_ROLES}
    rec["tensors"] = {k.split(".", 1)[1]: k for k in sorted(kept)}
    doc = {
        "generator": GENERATOR_NAME,
        "versions": {"torch": torch.__version__, "diffusers": diffusers.__version__,
                     "transformers": transformers.__version__},
        "prompt_embeds_order": "[negative (uncond), prompt (cond)] along the batch axis",
        "image_layout": "[H, W, 3] float32 in [0, 1]: (vae.decode(latents / 0.18215) * 0.5 + 0.5).clamp(0, 1), "
                        "permuted to HWC; not quantised",
        "cases": [rec],
    }
    (OUT_DIR / "cases.json").write_text(
        json.dumps(pipelines.json_safe(doc), indent=1, sort_keys=True, allow_nan=False) + "\n")
    pipelines.write_safetensors(OUT_DIR / "expected.safetensors", kept,
                                {"generator": GENERATOR_NAME, "cases": "see cases.json"})
    total = sum(p.stat().st_size for p in OUT_DIR.rglob("*") if p.is_file())
    print(f"wrote {len(kept)} tensors, {total} bytes", flush=True)


if __name__ == "__main__":
    main()
