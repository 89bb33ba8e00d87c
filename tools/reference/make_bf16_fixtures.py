#!/usr/bin/env python3
"""Record diffusers' fp32 and bf16-autocast UNet outputs on the model fixtures' UNet inputs.

Writes Tests/Fixtures/models/<variant>/bf16.safetensors for sd1 and sd2v (relative to the repo root):

    unet.out0_fp32, unet.out1_fp32, ...   UNet2DConditionModel in float32 (the parity reference)
    unet.out0_autocast, ...               the same call under torch.autocast("cpu", dtype=torch.bfloat16),
                                          cast back to float32

Inputs are the ones make_model_fixtures.py wrote to expected.safetensors (unet.sample, unet.t0, ...);
the UNet is the variant's diffusers folder (float16 weights, loaded as float32). The metadata holds, per
output, diffusers' own relative L2 error of autocast against fp32, ||autocast - fp32|| / ||fp32||, which
DarkroomModelsTests/BFloat16Tests compares Darkroom's bf16 mode with.

It also writes Tests/Fixtures/models/sd1/bf16_job.safetensors: a whole img2img job (sd1's diffusers folder,
Euler, 6 steps at strength 0.6, guidance 7.5, seed 1234, Tests/Fixtures/pipelines/inputs/photo.png, the prompt
below) in float32 (`image_fp32`) and under bf16 autocast (`image_autocast`), images in [0, 1] (HWC), with
autocast's relative L2 error against fp32 in the metadata: DarkroomServiceTests/PrecisionJobTests runs the same
job with `"precision": "bf16"` and holds Darkroom's error to a multiple of it.

Run from the repo root: ~/venv/bin/python tools/reference/make_bf16_fixtures.py
"""
import json
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parents[2] / "Tests/Fixtures/models"
CASES = [  # (output name, sample, timestep, batch of the context)
    ("unet.out0", "unet.sample", "unet.t0", None),
    ("unet.out1", "unet.sample", "unet.t1", None),
    ("unet.out_ns", "unet.sample_ns", "unet.t_ns", None),
    ("unet.out_odd", "unet.sample_odd", "unet.t_odd", 1),
]


def relative_l2(x: torch.Tensor, reference: torch.Tensor) -> float:
    return float((x.double() - reference.double()).norm() / reference.double().norm())


JOB_PROMPT = "a photograph of an astronaut riding a horse"


def job_fixture() -> None:
    import numpy as np
    from diffusers import EulerDiscreteScheduler, StableDiffusionImg2ImgPipeline
    from PIL import Image

    torch.set_num_threads(1)
    folder = ROOT / "sd1"
    pipe = StableDiffusionImg2ImgPipeline.from_pretrained(
        str(folder / "diffusers"), torch_dtype=torch.float32, safety_checker=None, feature_extractor=None,
        requires_safety_checker=False)
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    image = Image.open(ROOT.parent / "pipelines/inputs/photo.png").convert("RGB")

    def run():
        out = pipe(JOB_PROMPT, image=image, strength=0.6, num_inference_steps=6, guidance_scale=7.5,
                   generator=torch.Generator("cpu").manual_seed(1234), output_type="np").images[0]
        return torch.from_numpy(np.ascontiguousarray(out)).float()

    with torch.no_grad():
        fp32 = run()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            autocast = run()
    error = relative_l2(autocast, fp32)
    print(f"sd1 job: diffusers autocast bf16 relative L2 error {error:.3e}, "
          f"max {float((autocast - fp32).abs().max()) * 255:.2f}/255")
    save_file({"image_autocast": autocast.contiguous(), "image_fp32": fp32.contiguous()},
              str(folder / "bf16_job.safetensors"),
              metadata={"autocast_relative_l2": json.dumps(error), "torch": torch.__version__,
                        "diffusers": __import__("diffusers").__version__})


def main() -> None:
    torch.set_num_threads(2)
    for variant in ["sd1", "sd2v"]:
        folder = ROOT / variant
        e = load_file(str(folder / "expected.safetensors"))
        variant_files = list((folder / "diffusers/unet").glob("*.fp16.safetensors"))
        unet = UNet2DConditionModel.from_pretrained(str(folder / "diffusers"), subfolder="unet",
                                                    variant="fp16" if variant_files else None,
                                                    torch_dtype=torch.float32).eval()
        out, errors = {}, {}
        with torch.no_grad():
            for name, sample, t, batch in CASES:
                context = e["unet.context"] if batch is None else e["unet.context"][:batch]
                fp32 = unet(e[sample], e[t], encoder_hidden_states=context).sample
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    bf16 = unet(e[sample], e[t], encoder_hidden_states=context).sample.float()
                # the fp32 call is the committed parity reference
                assert relative_l2(fp32, e[name]) < 1e-5, f"{variant} {name}: fp32 differs from expected.safetensors"
                out[f"{name}_fp32"] = fp32.contiguous()
                out[f"{name}_autocast"] = bf16.contiguous()
                errors[name] = relative_l2(bf16, fp32)
                print(f"{variant} {name}: diffusers autocast bf16 relative L2 error {errors[name]:.3e}")
        metadata = {"autocast_relative_l2": json.dumps(errors), "torch": torch.__version__,
                    "diffusers": __import__("diffusers").__version__}
        save_file(out, str(folder / "bf16.safetensors"), metadata=metadata)
    job_fixture()


if __name__ == "__main__":
    main()
