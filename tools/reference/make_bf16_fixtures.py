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


if __name__ == "__main__":
    main()
