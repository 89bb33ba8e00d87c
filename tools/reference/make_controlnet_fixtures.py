#!/usr/bin/env python3
"""ControlNet reference fixtures: small random ControlNets and diffusers 0.42.1 runs with them.

Writes Tests/Fixtures/controlnet/ (relative to the repo root; everything there but README.md is rewritten):

    sd1_a/diffusers/   ControlNetModel.from_unet(the sd1 fixture UNet), every parameter re-drawn
                       (zero convs and the conditioning embedding's conv_out included, so the
                       residuals are not zero), saved with save_pretrained in float16
    sd1_a.safetensors  the same ControlNet as an LDM single file (`control_model.*` keys, as
                       lllyasviel's control_v11*.safetensors), float16
    sd1_b.safetensors  a second sd1 ControlNet (another seed), LDM keys, float32 (diffusers layout
                       is not written: the pipelines use it through this file)
    sd1_inpaint.safetensors  a ControlNet of the sd1_inpaint fixture UNet's widths with 4 input channels (as SD 1.5's
                       ControlNets on SD 1.5 inpainting), LDM keys, float16
    sd2v.safetensors   a ControlNet made from the sd2v fixture UNet (linear projections, head size
                       32), bare LDM keys without `control_model.` (as thibaud's controlnet-sd21
                       files), float16; its config.json is sd2v_config.json
    expected.safetensors  float32 references, named <case>.<role> (below)
    cases.json         the pipeline cases with every setting

LDM keys are the reverse of diffusers' `convert_controlnet_checkpoint`
(loaders/single_file_utils.py): `input_hint_block.{0,2,4,…,14}` (convs of the conditioning
embedding, SiLU at the odd indices), `input_blocks.*` and `middle_block.*` as the UNet's,
`zero_convs.i.0` (controlnet_down_blocks.i), `middle_block_out.0` (controlnet_mid_block),
`time_embed.{0,2}`. The script checks its files against diffusers' own converter: each
single file is loaded with `ControlNetModel.from_single_file(…, config=…)` and must hold exactly
the parameters of the model it was written from.

Weights follow the model fixtures (tools/reference/make_model_fixtures.py): weights
randn/sqrt(fan_in) rounded to 2 significant bits, biases 0.1·randn, norm weights 1 + 0.1·randn,
all rounded to float16 values, so the fp16 and fp32 files hold exactly the reference values.
The conditioning embedding is (16, 16, 32, 32) wide instead of SD's (16, 32, 96, 256): the same
four levels (so the LDM indices 0…14 are the real files'), fewer bytes.

Model references (`model.*`, per ControlNet `<cn>` in sd1_a, sd1_b, sd2v):
    <cn>.sample [2, 4, 8, 8], <cn>.t [1] = 981, <cn>.context (the model fixture's unet.context),
    <cn>.cond [2, 3, 64, 64] in [0, 1];
    <cn>.down.<i>, <cn>.mid        residuals at conditioning_scale 1
    <cn>.guess.down.<i>, .guess.mid   guess_mode=True, conditioning_scale 0.8
    <cn>.unet_out                  the fixture's UNet with <cn>'s residuals (scale 1) added
Pipeline cases (`<case>.image` [H, W, 3] float32 in [0, 1] as output_type="np",
`<case>.latents_final`, `<case>.control.<unit>` the control image tensor [1, 3, H, W] given to
diffusers): StableDiffusionControlNetImg2ImgPipeline / StableDiffusionControlNetInpaintPipeline
from the sd1 fixture folder in float32, generator torch.Generator("cpu").manual_seed(seed).

    ~/venv/bin/python tools/reference/make_controlnet_fixtures.py
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_model_fixtures as mm  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

import diffusers  # noqa: E402
from diffusers import (  # noqa: E402
    ControlNetModel,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    MultiControlNetModel,
    StableDiffusionControlNetImg2ImgPipeline,
    StableDiffusionControlNetInpaintPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTokenizer  # noqa: E402

diffusers.utils.logging.set_verbosity_error()
diffusers.utils.logging.disable_progress_bar()
torch.set_num_threads(1)

REPO_ROOT = Path(__file__).resolve().parents[2]
MODELS = REPO_ROOT / "Tests" / "Fixtures" / "models"
INPUTS = REPO_ROOT / "Tests" / "Fixtures" / "pipelines" / "inputs"
OUT = REPO_ROOT / "Tests" / "Fixtures" / "controlnet"
EMBEDDING = (16, 16, 32, 32)
PROMPT = "a photograph of an astronaut riding a horse"


# --------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------

@torch.no_grad()
def make_controlnet(variant: str, seed: str) -> ControlNetModel:
    variant_kw = {"variant": "fp16"} if variant == "sd2v" else {}
    unet = UNet2DConditionModel.from_pretrained(str(MODELS / variant / "diffusers" / "unet"), torch_dtype=torch.float32,
                                                **variant_kw)
    if unet.config.in_channels != 4:
        # A ControlNet for an inpainting UNet reads the 4 latent channels (the pipeline feeds it the latents alone),
        # as SD 1.5's ControlNets do on SD 1.5 inpainting: the encoder of a 4-channel UNet of the same widths.
        unet = UNet2DConditionModel.from_config({**dict(unet.config), "in_channels": 4})
    cn = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=EMBEDDING, load_weights_from_unet=False)
    mm.randomize_(cn, seed)
    mm.round_(cn, "fp16", coarse=True)
    return cn.eval()


def controlnet_to_ldm(cn: ControlNetModel, prefix: str) -> dict[str, torch.Tensor]:
    """The reverse of diffusers' convert_controlnet_checkpoint."""
    cfg = cn.config
    lpb = cfg.layers_per_block
    sd = dict(cn.state_dict())
    out: dict[str, torch.Tensor] = {}

    def put(ldm: str, key: str) -> None:
        assert key in sd, key
        assert prefix + ldm not in out, ldm
        out[prefix + ldm] = sd.pop(key)

    def resnet(ldm_prefix: str, dif_prefix: str) -> None:
        for k in [k for k in sd if k.startswith(dif_prefix + ".")]:
            rest = k[len(dif_prefix) + 1:]
            for a, b in mm.UNET_RESNET:
                if rest.startswith(a + "."):
                    rest = b + rest[len(a):]
                    break
            else:
                raise KeyError(k)
            put(f"{ldm_prefix}.{rest}", k)

    def attention(ldm_prefix: str, dif_prefix: str) -> None:
        for k in [k for k in sd if k.startswith(dif_prefix + ".")]:
            put(ldm_prefix + k[len(dif_prefix):], k)

    for s in ("weight", "bias"):
        put(f"time_embed.0.{s}", f"time_embedding.linear_1.{s}")
        put(f"time_embed.2.{s}", f"time_embedding.linear_2.{s}")
        put(f"input_blocks.0.0.{s}", f"conv_in.{s}")
        put(f"input_hint_block.0.{s}", f"controlnet_cond_embedding.conv_in.{s}")
        n_blocks = len(cn.controlnet_cond_embedding.blocks)
        for j in range(n_blocks):
            put(f"input_hint_block.{2 * (j + 1)}.{s}", f"controlnet_cond_embedding.blocks.{j}.{s}")
        put(f"input_hint_block.{2 * (n_blocks + 1)}.{s}", f"controlnet_cond_embedding.conv_out.{s}")
        put(f"middle_block_out.0.{s}", f"controlnet_mid_block.{s}")
        for j in range(len(cn.controlnet_down_blocks)):
            put(f"zero_convs.{j}.0.{s}", f"controlnet_down_blocks.{j}.{s}")

    n_levels = len(cfg.block_out_channels)
    i = 1
    for level in range(n_levels):
        for j in range(lpb):
            resnet(f"input_blocks.{i}.0", f"down_blocks.{level}.resnets.{j}")
            attention(f"input_blocks.{i}.1", f"down_blocks.{level}.attentions.{j}")
            i += 1
        if level != n_levels - 1:
            for s in ("weight", "bias"):
                put(f"input_blocks.{i}.0.op.{s}", f"down_blocks.{level}.downsamplers.0.conv.{s}")
            i += 1
    resnet("middle_block.0", "mid_block.resnets.0")
    attention("middle_block.1", "mid_block.attentions.0")
    resnet("middle_block.2", "mid_block.resnets.1")
    assert not sd, f"unconverted ControlNet keys: {sorted(sd)}"
    return out


def check_single_file(path: Path, config_folder: Path, ref: ControlNetModel) -> None:
    """diffusers' own converter must read the file back as exactly `ref`."""
    got = ControlNetModel.from_single_file(str(path), config=str(config_folder), torch_dtype=torch.float32,
                                           local_files_only=True)
    a, b = ref.state_dict(), got.state_dict()
    assert sorted(a) == sorted(b), sorted(set(a) ^ set(b))
    for k in a:
        assert torch.equal(a[k].float(), b[k].float()), k
    print(f"  {path.name}: diffusers' from_single_file reads back all {len(a)} tensors exactly", flush=True)


# --------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------

def unit_image(name: str) -> torch.Tensor:
    """A PNG as [1, 3, H, W] in [0, 1] (what diffusers' control image processor makes of it)."""
    a = np.asarray(Image.open(INPUTS / name).convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(a).permute(2, 0, 1)[None].contiguous()


def inpaint_condition(image: torch.Tensor, mask_name: str) -> torch.Tensor:
    """diffusers' documented make_inpaint_condition: masked pixels (mask > 0.5) set to −1."""
    m = np.asarray(Image.open(INPUTS / mask_name).convert("L"), dtype=np.float32) / 255.0
    out = image.clone()
    out[:, :, torch.from_numpy(m > 0.5)] = -1.0
    return out


def edge_image(h: int, w: int) -> torch.Tensor:
    """A fixed canny-like binary image: 1-pixel outlines of a rectangle, a circle and a diagonal."""
    e = np.zeros((h, w), np.float32)
    e[10, 8:40] = 1; e[34, 8:40] = 1; e[10:35, 8] = 1; e[10:35, 39] = 1
    ys, xs = np.mgrid[0:h, 0:w]
    r = np.sqrt((xs - 44.0) ** 2 + (ys - 42.0) ** 2)
    e[np.abs(r - 12.0) < 0.5] = 1
    for k in range(0, min(h, w) - 4):
        e[h - 1 - k, 4 + k // 2] = 1
    return torch.from_numpy(np.repeat(e[None, None], 3, axis=1)).contiguous()


# --------------------------------------------------------------------------
# references
# --------------------------------------------------------------------------

@torch.no_grad()
def model_refs(name: str, cn: ControlNetModel, variant: str, put) -> None:
    g = mm.gen(f"controlnet/{name}/inputs")
    exp = mm.load_file(str(MODELS / variant / "expected.safetensors"))
    context = exp["unet.context"]
    sample = mm.randn(g, 2, 4, 8, 8)
    cond = torch.rand(2, 3, 64, 64, generator=g)
    t = torch.tensor([981.0])
    put(f"{name}.sample", sample)
    put(f"{name}.context", context)
    put(f"{name}.t", t)
    put(f"{name}.cond", cond)
    down, mid = cn(sample, t, encoder_hidden_states=context, controlnet_cond=cond, return_dict=False)
    for i, d in enumerate(down):
        put(f"{name}.down.{i}", d)
    put(f"{name}.mid", mid)
    gdown, gmid = cn(sample, t, encoder_hidden_states=context, controlnet_cond=cond, conditioning_scale=0.8,
                     guess_mode=True, return_dict=False)
    for i, d in enumerate(gdown):
        put(f"{name}.guess.down.{i}", d)
    put(f"{name}.guess.mid", gmid)
    variant_kw = {"variant": "fp16"} if variant == "sd2v" else {}
    unet = UNet2DConditionModel.from_pretrained(str(MODELS / variant / "diffusers" / "unet"), torch_dtype=torch.float32,
                                                **variant_kw)
    out = unet(sample, t, encoder_hidden_states=context, down_block_additional_residuals=down,
               mid_block_additional_residual=mid).sample
    bare = unet(sample, t, encoder_hidden_states=context).sample
    put(f"{name}.unet_out", out)
    effect = (out - bare).abs().mean().item() / bare.abs().mean().item()
    assert effect > 0.05, f"{name}: the residuals barely change the UNet ({effect})"
    print(f"  {name}: {len(down)} down residuals; mean |Δ UNet out| / mean |out| = {effect:.3f}", flush=True)


def pipeline_cases() -> list[dict]:
    def case(name, pipeline, units, *, sampler="euler", strength=0.6, steps=10, guidance=7.5, guess=False,
             mask=None, seed=1234, note=None, model="sd1"):
        c = dict(name=name, pipeline=pipeline, model=model, sampler=sampler, prompt=PROMPT, negative_prompt="",
                 steps=steps, strength=strength, guidance=guidance, seed=seed, guess_mode=guess, image="photo.png",
                 mask=mask, units=units)
        if note:
            c["note"] = note
        return c

    def unit(model, control, scale=1.0, start=0.0, end=1.0):
        return dict(model=model, control=control, scale=scale, start=start, end=end)

    return [
        case("cn_i2i_tile", "img2img", [unit("sd1_a", "tile")],
             note="tile-like control: the image itself in [0, 1]"),
        case("cn_inp4_inpaint", "inpaint", [unit("sd1_a", "inpaint")], strength=0.75, mask="mask.png",
             note="4-channel UNet, blended after every step; control = image with masked pixels -1"),
        case("cn_i2i_canny", "img2img", [unit("sd1_b", "edges", scale=0.8)], sampler="dpmpp_2m_karras",
             note="a fixed binary edge image (the canny preprocessor is tested separately)"),
        case("cn_i2i_multi", "img2img", [unit("sd1_a", "tile", scale=0.7), unit("sd1_b", "edges", scale=0.5, start=0.3, end=0.8)],
             note="Multi-ControlNet: residuals summed; the second unit only between 30 % and 80 % of the steps"),
        case("cn_i2i_window", "img2img", [unit("sd1_a", "tile", scale=1.2, start=0.2, end=0.7)],
             note="control_guidance_start/end: controlnet_keep per step"),
        case("cn_i2i_guess", "img2img", [unit("sd1_a", "tile", scale=0.9)], guess=True,
             note="guess_mode with CFG: ControlNet on the conditional half only, residuals scaled by logspace(-1, 0)"),
        case("cn_i2i_cfg1", "img2img", [unit("sd1_a", "tile")], guidance=1.0,
             note="no CFG: batch of one, the control image not duplicated"),
        case("cn_inp9_inpaint", "inpaint", [unit("sd1_inpaint", "inpaint")], strength=0.75, mask="mask.png",
             model="sd1_inpaint",
             note="9-channel UNet: the ControlNet sees the 4 latent channels, the UNet [latents, mask, masked image]"),
    ]


SCHEDULERS = {
    "euler": (EulerDiscreteScheduler, {}),
    "dpmpp_2m_karras": (DPMSolverMultistepScheduler,
                        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True}),
}


@torch.no_grad()
def run_case(c: dict, nets: dict, put) -> None:
    folder = MODELS / c["model"] / "diffusers"
    tok = CLIPTokenizer.from_pretrained(str(MODELS / "sd1" / "diffusers" / "tokenizer"))   # the only fixture tokenizer
    units = c["units"]
    cns = [nets[u["model"]] for u in units]
    controlnet = cns[0] if len(cns) == 1 else MultiControlNetModel(cns)
    cls = StableDiffusionControlNetImg2ImgPipeline if c["pipeline"] == "img2img" else StableDiffusionControlNetInpaintPipeline
    pipe = cls.from_pretrained(str(folder), controlnet=controlnet, tokenizer=tok, safety_checker=None,
                               feature_extractor=None, requires_safety_checker=False, torch_dtype=torch.float32,
                               local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    scls, kw = SCHEDULERS[c["sampler"]]
    pipe.scheduler = scls.from_config(dict(pipe.scheduler.config), **kw)

    image = Image.open(INPUTS / c["image"]).convert("RGB")
    unit_tensor = unit_image(c["image"])
    controls = []
    for j, u in enumerate(units):
        if u["control"] == "tile":
            ctrl = unit_tensor
        elif u["control"] == "inpaint":
            ctrl = inpaint_condition(unit_tensor, c["mask"])
        elif u["control"] == "edges":
            ctrl = edge_image(unit_tensor.shape[2], unit_tensor.shape[3])
        else:
            raise ValueError(u["control"])
        put(f"{c['name']}.control.{j}", ctrl)
        controls.append(ctrl)

    final = {}

    def on_step_end(p, i, t, kw):
        final["latents"] = kw["latents"].clone()
        return {}

    single = len(units) == 1
    args = dict(prompt=c["prompt"], negative_prompt=c["negative_prompt"], image=image,
                control_image=controls[0] if single else controls,
                num_inference_steps=c["steps"], strength=c["strength"], guidance_scale=c["guidance"],
                controlnet_conditioning_scale=units[0]["scale"] if single else [u["scale"] for u in units],
                control_guidance_start=units[0]["start"] if single else [u["start"] for u in units],
                control_guidance_end=units[0]["end"] if single else [u["end"] for u in units],
                guess_mode=c["guess_mode"],
                generator=torch.Generator("cpu").manual_seed(c["seed"]), output_type="np",
                callback_on_step_end=on_step_end, callback_on_step_end_tensor_inputs=["latents"])
    if c["pipeline"] == "inpaint":
        args["mask_image"] = Image.open(INPUTS / c["mask"]).convert("L")
    out = pipe(**args).images[0]
    put(f"{c['name']}.image", torch.from_numpy(np.ascontiguousarray(out)))
    put(f"{c['name']}.latents_final", final["latents"])

    # The control must matter: the same call without it (scale 0) gives another image.
    args0 = dict(args, generator=torch.Generator("cpu").manual_seed(c["seed"]), callback_on_step_end=None,
                 controlnet_conditioning_scale=0.0 if single else [0.0] * len(units))
    args0.pop("callback_on_step_end_tensor_inputs")
    bare = pipe(**args0).images[0]
    effect = float(np.abs(out - bare).max())
    assert effect > 0.02, f"{c['name']}: the control barely changes the image ({effect})"
    print(f"  {c['name']}: max |image − image without control| = {effect:.3f}", flush=True)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for p in OUT.iterdir():   # everything but the README
        if p.name != "README.md":
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    tensors: dict[str, torch.Tensor] = {}

    def put(name: str, t: torch.Tensor) -> None:
        assert name not in tensors, name
        tensors[name] = t.detach().float().contiguous().clone()

    nets = {
        "sd1_a": make_controlnet("sd1", "controlnet/sd1_a"),
        "sd1_b": make_controlnet("sd1", "controlnet/sd1_b"),
        "sd2v": make_controlnet("sd2v", "controlnet/sd2v"),
        "sd1_inpaint": make_controlnet("sd1_inpaint", "controlnet/sd1_inpaint"),
    }
    # sd1_a: diffusers folder (fp16) + LDM single file (fp16, control_model.*)
    nets["sd1_a"].to(torch.float16).save_pretrained(str(OUT / "sd1_a" / "diffusers"), safe_serialization=True)
    nets["sd1_a"].to(torch.float32)
    mm.canonicalize_header(OUT / "sd1_a" / "diffusers" / "diffusion_pytorch_model.safetensors")
    ldm = mm.to_dtype(controlnet_to_ldm(nets["sd1_a"], "control_model."), torch.float16)
    mm.write_safetensors(OUT / "sd1_a.safetensors", ldm)
    check_single_file(OUT / "sd1_a.safetensors", OUT / "sd1_a" / "diffusers", nets["sd1_a"])
    # sd1_b: LDM single file, float32
    mm.write_safetensors(OUT / "sd1_b.safetensors", controlnet_to_ldm(nets["sd1_b"], "control_model."))
    check_single_file(OUT / "sd1_b.safetensors", OUT / "sd1_a" / "diffusers", nets["sd1_b"])
    # sd2v: bare LDM keys, float16; its config beside it for the check
    mm.write_safetensors(OUT / "sd2v.safetensors", mm.to_dtype(controlnet_to_ldm(nets["sd2v"], ""), torch.float16))
    cfg_folder = OUT / "_sd2v_config"
    cfg_folder.mkdir()
    nets["sd2v"].save_config(str(cfg_folder))
    check_single_file(OUT / "sd2v.safetensors", cfg_folder, nets["sd2v"])
    shutil.move(str(cfg_folder / "config.json"), str(OUT / "sd2v_config.json"))
    shutil.rmtree(cfg_folder)

    # sd1_inpaint: LDM single file, float16, for the 9-channel inpaint case (no model references of its own)
    mm.write_safetensors(OUT / "sd1_inpaint.safetensors", mm.to_dtype(controlnet_to_ldm(nets["sd1_inpaint"], "control_model."), torch.float16))

    for name, variant in [("sd1_a", "sd1"), ("sd1_b", "sd1"), ("sd2v", "sd2v")]:
        model_refs(name, nets[name], variant, put)

    cases = pipeline_cases()
    for c in cases:
        run_case(c, nets, put)

    mm.write_safetensors(OUT / "expected.safetensors", tensors,
                         metadata={"generator": "tools/reference/make_controlnet_fixtures.py",
                                   "diffusers": diffusers.__version__, "torch": torch.__version__})
    (OUT / "cases.json").write_text(json.dumps({"generator": "tools/reference/make_controlnet_fixtures.py",
                                                "diffusers": diffusers.__version__, "cases": cases},
                                               indent=1, sort_keys=True) + "\n")
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"wrote {OUT.relative_to(REPO_ROOT)} ({total / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
