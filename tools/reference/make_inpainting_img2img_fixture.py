#!/usr/bin/env python3
"""img2img on a 9-channel inpainting model: diffusers' StableDiffusionInpaintPipeline with an all-white mask.

A1111 runs img2img on inpainting checkpoints with a conditioning mask of ones and a masked image of
source * (1 - mask) = 0 (`processing.py::inpainting_image_conditioning` with image_mask None and
inpainting_mask_weight 1.0). That is exactly diffusers' inpainting pipeline with a mask that is 255
everywhere, so that pipeline is the reference for Darkroom's `imageToImage` on such models.

Writes Tests/Fixtures/pipelines/img2img_inpainting_model.safetensors (float32, sorted header):
    <case>.image   the output_type="np" image [H, W, 3], not quantised
and the cases (model sd1_inpaint, image, sampler, steps, strength, guidance, seed, prompts) as JSON
in the metadata key "cases". Scheduler, tokenizer, dtype and generator exactly as
make_pipeline_fixtures.py (which this imports). Deterministic: rerunning gives identical bytes.

    ~/venv/bin/python tools/reference/make_inpainting_img2img_fixture.py
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_pipeline_fixtures as ref  # noqa: E402

CASES = [
    dict(name="i2i9_euler_s060", recipe="euler", steps=10, strength=0.6, image="photo.png"),
    dict(name="i2i9_dpmpp_2m_karras_s100", recipe="dpmpp_2m_karras", steps=8, strength=1.0, image="photo.png"),
    dict(name="i2i9_ddim_s075_ns", recipe="ddim", steps=8, strength=0.75, image="photo_ns.png"),
]


@torch.no_grad()
def main() -> None:
    pipe, base_config = ref.get_pipe("inpaint", "sd1_inpaint")
    tensors, cases = {}, []
    for c in CASES:
        c = dict(c, model="sd1_inpaint", prompt=ref.PROMPT, negative_prompt="", guidance=7.5, seed=1234)
        cls, kwargs = ref.RECIPES[c["recipe"]]
        pipe.scheduler = cls.from_config(base_config, **kwargs)
        image = Image.open(ref.OUT_DIR / "inputs" / c["image"]).convert("RGB")
        white = Image.new("L", image.size, 255)
        out = pipe(prompt=c["prompt"], negative_prompt=c["negative_prompt"], image=image, mask_image=white,
                   height=image.height, width=image.width, strength=c["strength"],
                   num_inference_steps=c["steps"], guidance_scale=c["guidance"],
                   generator=torch.Generator("cpu").manual_seed(c["seed"]), output_type="np").images[0]
        tensors[f"{c['name']}.image"] = torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32))
        cases.append(c)
        print(c["name"], "mean", float(out.mean()), flush=True)
    ref.write_safetensors(ref.OUT_DIR / "img2img_inpainting_model.safetensors", tensors,
                          {"cases": json.dumps(cases, sort_keys=True), "generator": "tools/reference/make_inpainting_img2img_fixture.py"})


if __name__ == "__main__":
    main()
