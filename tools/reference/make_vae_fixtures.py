#!/usr/bin/env python3
"""Separate-VAE reference fixtures: a second random VAE for the tiny SD 1.x model, used by diffusers as
`StableDiffusionImg2ImgPipeline.from_pretrained(..., vae=AutoencoderKL)`.

Writes Tests/Fixtures/vae/ (relative to the repo root):

    tiny-vae/                   a diffusers `vae/` folder (config.json + diffusion_pytorch_model.safetensors, fp16),
                                the sd1 fixture's VAE architecture with other random weights (seed "vae-override",
                                the model fixtures' init and fp16 rounding, make_model_fixtures.py)
    tiny-vae-ldm.safetensors    the same weights with the LDM keys of a standalone VAE file as A1111 users keep
                                them (`encoder.down.0.block.0.conv1.weight`, no `first_stage_model.` prefix, like
                                vae-ft-mse-840000-ema-pruned.safetensors), float16
    expected.safetensors        float32:
        latent        [1, 4, 8, 8] a fixed latent;  decoded  vae.decode(latent / 0.18215)  [1, 3, 64, 64]
        image         the img2img result with the override ([H, W, 3] in [0, 1]): prompt, 6 Euler steps,
                      strength 0.6, guidance 7.5, seed 1234, Tests/Fixtures/pipelines/inputs/photo.png

    ~/venv/bin/python tools/reference/make_vae_fixtures.py
"""

from __future__ import annotations

import json

import os
import shutil
import sys
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_model_fixtures as mm  # noqa: E402
from make_lora_fixtures import MODEL, PHOTO, PROMPT, REPO  # noqa: E402  (the same model, photo and prompt)

import diffusers  # noqa: E402
from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionImg2ImgPipeline  # noqa: E402

OUT = REPO / "Tests" / "Fixtures" / "vae"


def main() -> None:
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    base = AutoencoderKL.from_pretrained(MODEL / "vae")
    vae = AutoencoderKL.from_config(base.config).eval()
    mm.randomize_(vae, "vae-override")
    mm.round_(vae, "fp16", coarse=True)
    vae.half().save_pretrained(OUT / "tiny-vae", safe_serialization=True)   # fp16-exact values: nothing lost
    # diffusers records the folder it loaded from (a path of the machine that ran this): not for the repository.
    config_path = OUT / "tiny-vae" / "config.json"
    config = json.loads(config_path.read_text())
    config.pop("_name_or_path", None)
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    vae.float()
    ldm = {k[len("first_stage_model."):]: v.half().contiguous() for k, v in mm.vae_to_ldm(vae).items()}
    save_file(ldm, OUT / "tiny-vae-ldm.safetensors")

    expected = {}
    g = torch.Generator().manual_seed(7)
    latent = torch.randn(1, 4, 8, 8, generator=g)
    with torch.no_grad():
        expected["latent"] = latent
        expected["decoded"] = vae.decode(latent / vae.config.scaling_factor).sample
    pipe = StableDiffusionImg2ImgPipeline.from_pretrained(
        MODEL, vae=AutoencoderKL.from_pretrained(OUT / "tiny-vae", torch_dtype=torch.float32), torch_dtype=torch.float32, safety_checker=None,
        feature_extractor=None, requires_safety_checker=False)
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    image = Image.open(PHOTO).convert("RGB")
    out = pipe(PROMPT, image=image, strength=0.6, num_inference_steps=6, guidance_scale=7.5,
               generator=torch.Generator("cpu").manual_seed(1234), output_type="np").images[0]
    expected["image"] = torch.from_numpy(np.ascontiguousarray(out)).float()
    save_file({k: v.contiguous().float() for k, v in sorted(expected.items())}, OUT / "expected.safetensors")
    for f in sorted(OUT.rglob("*")):
        print(f.relative_to(OUT), f.stat().st_size)


if __name__ == "__main__":
    main()
