#!/usr/bin/env python3
"""LoRA reference fixtures: random LoRAs for the tiny SD 1.x model, applied by diffusers.

Writes Tests/Fixtures/lora/ (relative to the repo root):

    kohya_a.safetensors   kohya-ss / A1111 layout (lora_unet_..., lora_te_...), float32, rank 4, alpha 2
                          (scale 0.5): every attention projection, proj_in/out, the feed-forward layers,
                          time_emb_proj, conv1/conv2 of every resnet (LoCon: 3x3 down, 1x1 up),
                          the down/up samplers' convs; text encoder q/k/v/out_proj and fc1/fc2
    kohya_b.safetensors   kohya-ss layout, float16, rank 2, no alpha (scale 1): attn2 of the UNet only
    peft_c.safetensors    diffusers/PEFT layout written by StableDiffusionPipeline.save_lora_weights
                          (unet.*.lora_A/lora_B, text_encoder.*), r 4, lora_alpha 8 (scale 2) recorded in the
                          file's lora_adapter_metadata
    loha_d.safetensors    LyCORIS LoHa (hada_w1_a/b, hada_w2_a/b, alpha 1, rank 2) on an attention projection and a
                          3x3 resnet conv
    lokr_e.safetensors    LyCORIS LoKr: lokr_w1 whole with lokr_w2_a/b (alpha 1, scale 1/2) on a projection, and
                          lokr_w1 with a 4-D lokr_w2 (no split: scale 1) on a 3x3 conv
    foreign.safetensors   an SDXL-style kohya LoRA (lora_te2_..., a 2048-wide attn2) that matches nothing here
    expected.safetensors  float32, named <case>.<role>:
        inputs.sample [1,4,8,8], inputs.timestep [1], inputs.context [2,77,4], inputs.ids [2,77] (as float)
        <case>.unet   UNet output for inputs (sample, timestep, context)
        <case>.text   text-encoder last hidden state for inputs.ids
        <case>.image  a whole img2img run ([H, W, 3] in [0, 1]), settings in cases.json
    cases.json            the LoRA set (adapter names, weights) and img2img settings of each case

LoHa and LoKr: diffusers cannot load them, so their reference merges the update by hand in float64, with the
formulas of A1111 extensions-builtin/Lora/network_hada.py and network_lokr.py (LyCORIS): (w1a w1b) * (w2a w2b)
and kron(w1, w2), times alpha / rank.
diffusers 0.42.1 with peft: pipe.load_lora_weights(file, adapter_name=...), pipe.set_adapters(names, weights).
PEFT keeps the update unfused (W x + scale * B(A x)); Darkroom merges it into W: the two agree to rounding.

    ~/venv/bin/python tools/reference/make_lora_fixtures.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

import diffusers  # noqa: E402
from diffusers import EulerDiscreteScheduler, StableDiffusionImg2ImgPipeline  # noqa: E402

diffusers.utils.logging.set_verbosity_error()
diffusers.utils.logging.disable_progress_bar()
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "Tests" / "Fixtures" / "models" / "sd1" / "diffusers"
PHOTO = REPO / "Tests" / "Fixtures" / "pipelines" / "inputs" / "photo.png"
OUT = REPO / "Tests" / "Fixtures" / "lora"
PROMPT = "a photograph of an astronaut riding a horse"


def load_pipe():
    pipe = StableDiffusionImg2ImgPipeline.from_pretrained(
        MODEL, torch_dtype=torch.float32, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def kohya_name(prefix: str, module: str) -> str:
    return prefix + module.replace(".", "_")


def lora_pair(g, weight: torch.Tensor, rank: int, scale: float):
    """down/up so that scale * up @ down has about half the weight's spread."""
    out_f = weight.shape[0]
    spread = float(weight.float().std()) or 0.1
    down = torch.randn((rank,) + tuple(weight.shape[1:]), generator=g) * 0.3
    up_std = 0.5 * spread / (rank ** 0.5 * 0.3 * scale)
    up = torch.randn((out_f, rank) + ((1, 1) if weight.dim() == 4 else ()), generator=g) * up_std
    return down, up


def make_kohya_a(pipe, g) -> dict:
    sd = {}
    rank, alpha = 4, 2.0
    for name, module in pipe.unet.named_modules():
        leaf = name.split(".")[-1]
        is_attn = leaf in ("to_q", "to_k", "to_v") or name.endswith("to_out.0")
        is_ff = name.endswith("ff.net.0.proj") or name.endswith("ff.net.2")
        is_other = leaf in ("proj_in", "proj_out", "time_emb_proj", "conv1", "conv2") or \
            (leaf == "conv" and ("downsamplers" in name or "upsamplers" in name))
        if not (is_attn or is_ff or is_other) or not hasattr(module, "weight"):
            continue
        down, up = lora_pair(g, module.weight.detach(), rank, alpha / rank)
        base = kohya_name("lora_unet_", name)
        sd[base + ".lora_down.weight"] = down
        sd[base + ".lora_up.weight"] = up
        sd[base + ".alpha"] = torch.tensor(alpha)
    for name, module in pipe.text_encoder.named_modules():
        leaf = name.split(".")[-1]
        if leaf not in ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"):
            continue
        down, up = lora_pair(g, module.weight.detach(), rank, alpha / rank)
        base = kohya_name("lora_te_", name if name.startswith("text_model.") else "text_model." + name)  # kohya names (transformers 4 paths)
        sd[base + ".lora_down.weight"] = down
        sd[base + ".lora_up.weight"] = up
        sd[base + ".alpha"] = torch.tensor(alpha)
    return sd


def make_kohya_b(pipe, g) -> dict:
    sd = {}
    for name, module in pipe.unet.named_modules():
        if ".attn2." not in name + "." or name.split(".")[-1] not in ("to_q", "to_k", "to_v"):
            continue
        down, up = lora_pair(g, module.weight.detach(), 2, 1.0)
        base = kohya_name("lora_unet_", name)
        sd[base + ".lora_down.weight"] = down.half()
        sd[base + ".lora_up.weight"] = up.half()
    return sd


def make_peft_c(g, path: Path) -> None:
    from peft import LoraConfig, inject_adapter_in_model
    from peft.utils import get_peft_model_state_dict

    pipe = load_pipe()
    unet_config = LoraConfig(r=4, lora_alpha=8, target_modules=["to_q", "to_k", "to_v", "to_out.0", "proj_in", "conv2"],
                             init_lora_weights=False)
    te_config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "fc2"], init_lora_weights=False)
    pipe.unet.add_adapter(unet_config)
    inject_adapter_in_model(te_config, pipe.text_encoder)   # transformers' add_adapter wants a newer peft
    with torch.no_grad():
        for model in (pipe.unet, pipe.text_encoder):
            for name, p in model.named_parameters():
                if "lora_A" in name:
                    p.copy_(torch.randn(p.shape, generator=g) * 0.3)
                elif "lora_B" in name:
                    p.copy_(torch.randn(p.shape, generator=g) * 0.02)
    StableDiffusionImg2ImgPipeline.save_lora_weights(
        path.parent, weight_name=path.name,
        unet_lora_layers=get_peft_model_state_dict(pipe.unet),
        text_encoder_lora_layers=get_peft_model_state_dict(pipe.text_encoder),
        unet_lora_adapter_metadata=unet_config.to_dict(), text_encoder_lora_adapter_metadata=te_config.to_dict())


LYCORIS_TARGETS = {
    "loha": ["down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q", "down_blocks.0.resnets.0.conv1"],
    "lokr": ["down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_v", "up_blocks.1.resnets.1.conv2"],
}


def make_loha(pipe, g) -> dict:
    sd = {}
    modules = dict(pipe.unet.named_modules())
    for name in LYCORIS_TARGETS["loha"]:
        w = modules[name].weight
        rest = w[0].numel()
        base = kohya_name("lora_unet_", name)
        sd[base + ".hada_w1_a"] = torch.randn(w.shape[0], 2, generator=g) * 0.5
        sd[base + ".hada_w1_b"] = torch.randn(2, rest, generator=g) * 0.5
        sd[base + ".hada_w2_a"] = torch.randn(w.shape[0], 2, generator=g) * 0.5
        sd[base + ".hada_w2_b"] = torch.randn(2, rest, generator=g) * 0.5
        sd[base + ".alpha"] = torch.tensor(1.0)
    return sd


def make_lokr(pipe, g) -> dict:
    modules = dict(pipe.unet.named_modules())
    to_v, conv = LYCORIS_TARGETS["lokr"]
    assert tuple(modules[to_v].weight.shape) == (32, 32) and tuple(modules[conv].weight.shape)[:2] == (32, 32)
    a, c = kohya_name("lora_unet_", to_v), kohya_name("lora_unet_", conv)
    return {
        a + ".lokr_w1": torch.randn(4, 4, generator=g) * 0.3,
        a + ".lokr_w2_a": torch.randn(8, 2, generator=g) * 0.3,
        a + ".lokr_w2_b": torch.randn(2, 8, generator=g) * 0.3,
        a + ".alpha": torch.tensor(1.0),
        c + ".lokr_w1": torch.randn(2, 2, generator=g) * 0.3,
        c + ".lokr_w2": torch.randn(16, 16, 3, 3, generator=g) * 0.05,
    }


def lycoris_delta(sd: dict, base: str, shape) -> torch.Tensor:
    t = {k[len(base) + 1:]: v.double() for k, v in sd.items() if k.startswith(base + ".")}
    if "hada_w1_a" in t:
        d = (t["hada_w1_a"] @ t["hada_w1_b"]) * (t["hada_w2_a"] @ t["hada_w2_b"])
        dim = t["hada_w1_b"].shape[0]
    else:
        w1 = t["lokr_w1"]
        w2 = t["lokr_w2"] if "lokr_w2" in t else t["lokr_w2_a"] @ t["lokr_w2_b"]
        dim = t["lokr_w2_b"].shape[0] if "lokr_w2_b" in t else None
        if w2.dim() == 4:
            w1 = w1[:, :, None, None]
        d = torch.kron(w1, w2)
    scale = float(t["alpha"]) / dim if ("alpha" in t and dim) else 1.0
    return d.reshape(shape) * scale


def hand_merged(sd: dict, multiplier: float):
    pipe = load_pipe()
    with torch.no_grad():
        for name, module in pipe.unet.named_modules():
            base = kohya_name("lora_unet_", name)
            if any(k.startswith(base + ".") for k in sd):
                module.weight.copy_((module.weight.double() + multiplier * lycoris_delta(sd, base, module.weight.shape)).float())
    return pipe


def make_foreign(g) -> dict:
    return {
        "lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight": torch.randn(4, 1280, generator=g),
        "lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight": torch.randn(1280, 4, generator=g),
        "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k.lora_down.weight": torch.randn(4, 2048, generator=g),
        "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k.lora_up.weight": torch.randn(640, 4, generator=g),
    }


def check_kohya_text(ids) -> None:
    """Self-check of diffusers' text-encoder LoRA loading under transformers 5 (its load report prints MISSING
    lines for the adapter): the output must equal W + (alpha/r) up @ down merged by hand."""
    from safetensors.torch import load_file
    pipe = load_pipe()
    sd = load_file(OUT / "kohya_a.safetensors")
    with torch.no_grad():
        for name, module in pipe.text_encoder.named_modules():
            key = kohya_name("lora_te_", "text_model." + name)
            if key + ".lora_down.weight" in sd:
                down, up = sd[key + ".lora_down.weight"], sd[key + ".lora_up.weight"]
                module.weight += (up @ down) * (float(sd[key + ".alpha"]) / down.shape[0])
        manual = pipe.text_encoder(ids)[0]
    loaded = load_pipe()
    loaded.load_lora_weights(OUT, weight_name="kohya_a.safetensors", adapter_name="kohya_a")
    with torch.no_grad():
        diff = float((loaded.text_encoder(ids)[0] - manual).abs().max())
    assert diff < 1e-5, f"diffusers' text-encoder LoRA differs from the hand merge by {diff}"


CASES = [
    dict(name="kohya_a", loras=[("kohya_a", 1.0)]),
    dict(name="kohya_a_half", loras=[("kohya_a", 0.5)]),
    dict(name="kohya_b_fp16", loras=[("kohya_b", 1.0)]),
    dict(name="peft_c", loras=[("peft_c", 1.0)]),
    dict(name="peft_c_minus", loras=[("peft_c", -1.0)]),
    dict(name="two", loras=[("kohya_a", 0.5), ("peft_c", -1.0)]),
]
IMAGE_CASES = {"kohya_a": 0.8, "two": None}   # case -> override of the first LoRA's weight (None: as listed)
STEPS, STRENGTH, GUIDANCE, SEED = 6, 0.6, 7.5, 1234


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(20261203)
    base = load_pipe()
    save_file({k: v.contiguous() for k, v in make_kohya_a(base, g).items()}, OUT / "kohya_a.safetensors")
    save_file({k: v.contiguous() for k, v in make_kohya_b(base, g).items()}, OUT / "kohya_b.safetensors")
    make_peft_c(g, OUT / "peft_c.safetensors")
    save_file(make_foreign(g), OUT / "foreign.safetensors")
    lycoris = {"loha_d": (make_loha(base, g), 1.0), "lokr_e": (make_lokr(base, g), 0.7)}
    for name, (sd, _) in lycoris.items():
        save_file({k: v.contiguous() for k, v in sd.items()}, OUT / f"{name}.safetensors")

    expected = {}
    sample = torch.randn(1, 4, 8, 8, generator=g)
    timestep = torch.tensor([421.0])
    ids = base.tokenizer([PROMPT, "a cat"], padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        context = base.text_encoder(ids)[0]
    expected["inputs.sample"] = sample
    expected["inputs.timestep"] = timestep
    expected["inputs.context"] = context[:2]
    expected["inputs.ids"] = ids.float()
    sample2 = sample.repeat(2, 1, 1, 1)
    with torch.no_grad():
        expected["base.unet"] = base.unet(sample2, timestep, encoder_hidden_states=context).sample
        expected["base.text"] = base.text_encoder(ids)[0]
    image = Image.open(PHOTO).convert("RGB")
    check_kohya_text(ids)
    cases_json = []
    for c in CASES:
        pipe = load_pipe()
        names = []
        for lora, _ in c["loras"]:
            if lora not in names:
                pipe.load_lora_weights(OUT, weight_name=f"{lora}.safetensors", adapter_name=lora)
                names.append(lora)
        weights = [w for _, w in c["loras"]]
        if c["name"] in IMAGE_CASES and IMAGE_CASES[c["name"]] is not None:
            weights[0] = IMAGE_CASES[c["name"]]
        pipe.set_adapters([n for n, _ in c["loras"]], adapter_weights=[w for _, w in c["loras"]])
        with torch.no_grad():
            expected[f"{c['name']}.unet"] = pipe.unet(sample2, timestep, encoder_hidden_states=context).sample
            expected[f"{c['name']}.text"] = pipe.text_encoder(ids)[0]
        entry = dict(name=c["name"], loras=[dict(name=n, weight=w) for n, w in c["loras"]])
        if c["name"] in IMAGE_CASES:
            pipe.set_adapters([n for n, _ in c["loras"]], adapter_weights=weights)
            out = pipe(PROMPT, image=image, strength=STRENGTH, num_inference_steps=STEPS, guidance_scale=GUIDANCE,
                       generator=torch.Generator("cpu").manual_seed(SEED), output_type="np").images[0]
            expected[f"{c['name']}.image"] = torch.from_numpy(np.ascontiguousarray(out)).float()
            entry["image"] = dict(loras=[dict(name=n, weight=w) for (n, _), w in zip(c["loras"], weights)],
                                  prompt=PROMPT, steps=STEPS, strength=STRENGTH, guidance=GUIDANCE, seed=SEED,
                                  sampler="euler", input="Tests/Fixtures/pipelines/inputs/photo.png")
        cases_json.append(entry)
        del pipe
    for name, (sd, multiplier) in lycoris.items():
        pipe = hand_merged(sd, multiplier)
        with torch.no_grad():
            expected[f"{name}.unet"] = pipe.unet(sample2, timestep, encoder_hidden_states=context).sample
        cases_json.append(dict(name=name, loras=[dict(name=name, weight=multiplier)], reference="hand merge, float64"))
    out = base(PROMPT, image=image, strength=STRENGTH, num_inference_steps=STEPS, guidance_scale=GUIDANCE,
               generator=torch.Generator("cpu").manual_seed(SEED), output_type="np").images[0]
    expected["base.image"] = torch.from_numpy(np.ascontiguousarray(out)).float()
    save_file({k: v.contiguous().float() for k, v in sorted(expected.items())}, OUT / "expected.safetensors")
    (OUT / "cases.json").write_text(json.dumps(dict(generator="tools/reference/make_lora_fixtures.py",
                                                    diffusers=diffusers.__version__, cases=cases_json),
                                               indent=1, sort_keys=True) + "\n")
    for f in sorted(OUT.iterdir()):
        print(f.name, f.stat().st_size)


if __name__ == "__main__":
    main()
