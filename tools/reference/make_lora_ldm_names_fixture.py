"""kohya_a with the UNet modules under their original LDM names (Tests/Fixtures/lora/kohya_a_ldm.safetensors).

kohya-ss writes SDXL LoRAs, and some SD 1.x ones, with the original (LDM / SGM) module names:
`lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q` where diffusers names it
`lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q`. This renames kohya_a's UNet modules to
those names. The mapping is found without any key-conversion table: each diffusers UNet weight of the tiny SD 1.x
fixture is matched to the single-file key (`model.diffusion_model.*`) that holds the same values (the weights are
random, so every match is unique; the script checks that). The LoRA's tensors are copied unchanged, so the
patched model must give exactly kohya_a's expected outputs (`expected.safetensors`, `kohya_a.*`).

Run from the repository root: ~/venv/bin/python tools/reference/make_lora_ldm_names_fixture.py
"""
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "Tests/Fixtures/models/sd1"
LORA = ROOT / "Tests/Fixtures/lora"


def main() -> None:
    diffusers = safe_open(str(MODEL / "diffusers/unet/diffusion_pytorch_model.safetensors"), "np")
    single = safe_open(str(MODEL / "sd1.safetensors"), "np")
    by_bytes = {}
    for key in single.keys():
        if key.startswith("model.diffusion_model."):
            value = single.get_tensor(key).astype(np.float32)
            by_bytes.setdefault(value.tobytes(), []).append(key[len("model.diffusion_model."):])
    ldm_name = {}
    for key in diffusers.keys():
        if not key.endswith(".weight"):
            continue
        value = diffusers.get_tensor(key).astype(np.float32)
        matches = by_bytes.get(value.tobytes(), [])
        if not matches and value.ndim == 2:   # single files keep some linear layers as 1x1 convolutions
            matches = by_bytes.get(value.reshape(*value.shape, 1, 1).tobytes(), [])
        assert len(matches) == 1, (key, matches)
        ldm_name[key[: -len(".weight")].replace(".", "_")] = matches[0][: -len(".weight")].replace(".", "_")

    lora = safe_open(str(LORA / "kohya_a.safetensors"), "np")
    out = {}
    renamed = 0
    for key in lora.keys():
        module, _, suffix = key.partition(".")
        if module.startswith("lora_unet_"):
            module = "lora_unet_" + ldm_name[module[len("lora_unet_"):]]
            renamed += 1
        out[f"{module}.{suffix}"] = lora.get_tensor(key)
    save_file(out, str(LORA / "kohya_a_ldm.safetensors"))
    print(f"kohya_a_ldm.safetensors: {renamed} UNet tensors renamed, {len(out)} in all")


if __name__ == "__main__":
    main()
