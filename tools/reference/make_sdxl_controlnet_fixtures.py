#!/usr/bin/env python3
"""SDXL ControlNet reference fixtures: tiny random SDXL ControlNets and diffusers 0.42.1 runs with them.

Reads the tiny SDXL model (Tests/Fixtures/models/sdxl/, written by make_sdxl_fixtures.py; its fp16 diffusers folder
loaded in float32 holds exactly the values it was made with) and writes Tests/Fixtures/controlnet_sdxl/ (everything
there but README.md is rewritten):

    sdxl_a/diffusers/   ControlNetModel.from_unet(the sdxl fixture UNet) as SDXL ControlNets are configured
                        (diffusers/controlnet-canny-sdxl-1.0: addition_embed_type "text_time", addition_time_embed_dim,
                        projection_class_embeddings_input_dim, transformer_layers_per_block per level, a first level
                        without attention), every parameter re-drawn, save_pretrained in float16
    sdxl_b.safetensors  a smaller SDXL ControlNet of the same skip widths, as the -mid/-small ones are made: one
                        transformer layer where the UNet has two, and mid_block_type "UNetMidBlock2D" (one resnet, no
                        mid attention); LDM keys (`control_model.*`, `label_emb.0.{0,2}` for add_embedding, the SDXL
                        UNet's rule), float16. diffusers has no LDM converter for SDXL ControlNets
                        (single_file_utils: "TODO: find non-Diffusers keys for controlnet_xl"), so the file is written
                        by the inverse of the SD 1.x converter (make_controlnet_fixtures.controlnet_to_ldm, checked
                        there against diffusers) plus label_emb, whose rule diffusers' convert_ldm_unet_checkpoint
                        checks in make_sdxl_fixtures.py. sdxl_b_config.json is its diffusers config.
    expected.safetensors float32 references (below)
    cases.json          the pipeline cases with every setting

The conditioning embedding is (16, 32): the tiny SDXL VAE shrinks images 2× (two levels), so the embedding has one
stride-2 convolution (SD's (16, 32, 96, 256) has three for 8×).

Model references, per ControlNet <cn> in sdxl_a, sdxl_b:
    <cn>.sample [2, 4, 8, 8], <cn>.t [1] = 981, <cn>.cond [2, 3, 16, 16] in [0, 1], and the sdxl fixture's
    unet.context [2, 77, 12], unet.text_embeds [2, 6], unet.time_ids [2, 6] (stored here as <cn>.context, …)
    <cn>.down.<i>, <cn>.mid            residuals at conditioning_scale 1
    <cn>.guess.down.<i>, <cn>.guess.mid  guess_mode=True, conditioning_scale 0.8
    <cn>.unet_out                      the sdxl fixture UNet with <cn>'s residuals (scale 1) added
Pipeline cases: StableDiffusionXLControlNetImg2ImgPipeline and (`pipeline: "inpaint"`, `<case>.mask` [1, 1, H, W], the
centre half) StableDiffusionXLControlNetInpaintPipeline on the sdxl fixture folder in float32, the folder's
scheduler config with make_pipeline_fixtures.RECIPES' class and arguments, generator
torch.Generator().manual_seed(seed): `<case>.input` [1, 3, H, W] in [-1, 1], `<case>.control.<unit>` the control image
tensor [1, 3, H, W] in [0, 1] given to diffusers, `<case>.image` [H, W, 3] (output_type="np").

    ~/venv/bin/python tools/reference/make_sdxl_controlnet_fixtures.py     # from the repo root, offline
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_model_fixtures as m  # noqa: E402  (sets HF_HUB_OFFLINE, one thread, quiet logging)
import make_sdxl_fixtures as xl  # noqa: E402
import make_controlnet_fixtures as cf  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import diffusers  # noqa: E402
from diffusers import (  # noqa: E402
    ControlNetModel,
    MultiControlNetModel,
    StableDiffusionXLControlNetImg2ImgPipeline,
    StableDiffusionXLControlNetInpaintPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTokenizer  # noqa: E402

SDXL = m.OUT_DIR / "sdxl"
OUT = m.REPO_ROOT / "Tests" / "Fixtures" / "controlnet_sdxl"
EMBEDDING = (16, 32)
GENERATOR = "tools/reference/make_sdxl_controlnet_fixtures.py"
NEGATIVE = xl.NEGATIVE
PROMPT = xl.PROMPTS[0]


@torch.no_grad()
def load_unet() -> UNet2DConditionModel:
    return UNet2DConditionModel.from_pretrained(str(SDXL / "diffusers" / "unet"), torch_dtype=torch.float32).eval()


@torch.no_grad()
def make_controlnets(unet: UNet2DConditionModel) -> dict[str, ControlNetModel]:
    a = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=EMBEDDING, load_weights_from_unet=False)
    config = dict(a.config)
    b = ControlNetModel.from_config({**config, "transformer_layers_per_block": [1, 1], "mid_block_type": "UNetMidBlock2D"})
    nets = {"sdxl_a": a, "sdxl_b": b}
    for name, net in nets.items():
        assert net.config.addition_embed_type == "text_time" and hasattr(net, "add_embedding"), name
        m.randomize_(net, f"controlnet_sdxl/{name}")
        m.round_(net, "fp16", coarse=True)
        net.eval()
    assert len(b.down_blocks[1].attentions[0].transformer_blocks) == 1 and not hasattr(b.mid_block, "attentions") \
        or len(getattr(b.mid_block, "attentions", [])) == 0
    return nets


def controlnet_to_ldm(cn: ControlNetModel, prefix: str) -> dict[str, torch.Tensor]:
    """make_controlnet_fixtures' inverse of convert_controlnet_checkpoint, with SDXL's add_embedding as the SDXL UNet's
    `label_emb.0.0` / `label_emb.0.2` (make_model_fixtures.unet_to_ldm's rule)."""
    class Stripped:   # the same model without add_embedding, for the SD 1.x inverse
        def __init__(self, net):
            self.config = net.config
            self.controlnet_cond_embedding = net.controlnet_cond_embedding
            self.controlnet_down_blocks = net.controlnet_down_blocks
            self._sd = {k: v for k, v in net.state_dict().items() if not k.startswith("add_embedding.")}

        def state_dict(self):
            return dict(self._sd)

    out = cf.controlnet_to_ldm(Stripped(cn), prefix)
    sd = cn.state_dict()
    for s in ("weight", "bias"):
        out[f"{prefix}label_emb.0.0.{s}"] = sd[f"add_embedding.linear_1.{s}"]
        out[f"{prefix}label_emb.0.2.{s}"] = sd[f"add_embedding.linear_2.{s}"]
    assert len(out) == len(sd), (len(out), len(sd))
    return out


@torch.no_grad()
def model_refs(name: str, cn: ControlNetModel, unet: UNet2DConditionModel, put) -> None:
    exp = m.load_file(str(SDXL / "expected.safetensors"))
    g = m.gen(f"controlnet_sdxl/{name}/inputs")
    sample = m.randn(g, 2, 4, 8, 8)
    cond = torch.rand(2, 3, 16, 16, generator=g)
    t = torch.tensor([981.0])
    context, text_embeds, time_ids = exp["unet.context"], exp["unet.text_embeds"], exp["unet.time_ids"]
    added = {"text_embeds": text_embeds, "time_ids": time_ids}
    for key, value in [("sample", sample), ("cond", cond), ("t", t), ("context", context), ("text_embeds", text_embeds),
                       ("time_ids", time_ids)]:
        put(f"{name}.{key}", value)
    down, mid = cn(sample, t, encoder_hidden_states=context, controlnet_cond=cond, added_cond_kwargs=added,
                   return_dict=False)
    for i, d in enumerate(down):
        put(f"{name}.down.{i}", d)
    put(f"{name}.mid", mid)
    gdown, gmid = cn(sample, t, encoder_hidden_states=context, controlnet_cond=cond, conditioning_scale=0.8,
                     guess_mode=True, added_cond_kwargs=added, return_dict=False)
    for i, d in enumerate(gdown):
        put(f"{name}.guess.down.{i}", d)
    put(f"{name}.guess.mid", gmid)
    out = unet(sample, t, encoder_hidden_states=context, added_cond_kwargs=added,
               down_block_additional_residuals=down, mid_block_additional_residual=mid).sample
    bare = unet(sample, t, encoder_hidden_states=context, added_cond_kwargs=added).sample
    put(f"{name}.unet_out", out)
    effect = (out - bare).abs().mean().item() / bare.abs().mean().item()
    assert effect > 0.05, f"{name}: the residuals barely change the UNet ({effect})"
    # The added conditioning must matter to the ControlNet itself.
    other, _ = cn(sample, t, encoder_hidden_states=context, controlnet_cond=cond,
                  added_cond_kwargs={"text_embeds": text_embeds, "time_ids": time_ids.flip(0)}, return_dict=False)
    added_effect = (other[-1] - down[-1]).abs().mean().item() / down[-1].abs().mean().item()
    assert added_effect > 0.01, f"{name}: time_ids barely change the residuals ({added_effect})"
    print(f"  {name}: {len(down)} down residuals; mean |Δ UNet out| / mean |out| = {effect:.3f}; "
          f"time_ids swapped: {added_effect:.3f}", flush=True)


def edges(h: int, w: int) -> torch.Tensor:
    """A fixed binary pattern in [0, 1] standing in for a canny map: 1-pixel outlines of 6-pixel squares."""
    ys, xs = np.mgrid[0:h, 0:w]
    e = (((ys % 6) == 0) | ((xs % 6) == 0)).astype(np.float32)
    return torch.from_numpy(np.repeat(e[None, None], 3, axis=1)).contiguous()


def pipeline_cases() -> list[dict]:
    def case(name, units, *, pipeline="img2img", sampler="euler", photo="astronaut", width=32, height=32, strength=0.6,
             steps=5, guidance=5.0, guess=False, negative="", seed=1234, note=""):
        return dict(name=name, pipeline=pipeline, units=units, sampler=sampler, photo=photo, width=width, height=height,
                    prompt=PROMPT, negative_prompt=negative, strength=strength, steps=steps, guidance=guidance,
                    guess_mode=guess, seed=seed, note=note)

    def unit(model, control, scale=1.0, start=0.0, end=1.0):
        return dict(model=model, control=control, scale=scale, start=start, end=end)

    return [
        case("xlcn_euler_tile", [unit("sdxl_a", "tile")], note="tile-like control: the image itself in [0, 1]"),
        case("xlcn_dpmpp_ns", [unit("sdxl_a", "edges", scale=0.8)], sampler="dpmpp_2m_karras", photo="coffee",
             height=24, negative=NEGATIVE, strength=0.8, seed=7, note="non-square, negative prompt, scale 0.8"),
        case("xlcn_no_guidance", [unit("sdxl_a", "tile")], sampler="euler_a", guidance=1.0, seed=42,
             note="no CFG (batch of one), an ancestral sampler (noise drawn every step)"),
        case("xlcn_window", [unit("sdxl_a", "tile", scale=1.2, start=0.2, end=0.7)], sampler="ddim", steps=8,
             note="control_guidance_start/end: controlnet_keep per step"),
        case("xlcn_guess", [unit("sdxl_a", "tile", scale=0.9)], sampler="unipc", guess=True, negative=NEGATIVE,
             note="guess mode with CFG: the ControlNet sees the conditional half of the latents, prompt embeddings, "
                  "text_embeds and time_ids; residuals scaled by logspace(-1, 0)"),
        case("xlcn_multi_small", [unit("sdxl_a", "tile", scale=0.7), unit("sdxl_b", "edges", scale=0.6, start=0.0, end=0.8)],
             sampler="heun", photo="coffee", height=24,
             note="Multi-ControlNet with the small one (one transformer layer, no mid attention), non-square, a "
                  "second-order sampler"),
        # StableDiffusionXLControlNetInpaintPipeline on the 4-channel sdxl UNet: the centre half of the image masked
        # (make_sdxl_fixtures.inpaint_cases' mask), the known region blended back after every step, no paste-back.
        case("xlcn_inpaint_tile", [unit("sdxl_a", "tile")], pipeline="inpaint", strength=0.75, seed=5,
             note="4-channel inpainting with a tile-like control"),
        case("xlcn_inpaint_masked_ns", [unit("sdxl_a", "inpaint", scale=0.8)], pipeline="inpaint", sampler="dpmpp_2m",
             photo="coffee", height=24, strength=0.9, guess=True, negative=NEGATIVE, seed=17,
             note="the inpaint condition (masked pixels −1), non-square, guess mode"),
    ]


@torch.no_grad()
def run_case(c: dict, pipes: dict, nets: dict, folder_config: dict, put) -> None:
    import make_pipeline_fixtures as pf   # its RECIPES table (imported here: it configures diffusers' logging)
    units = c["units"]
    pipe = pipes[c["pipeline"]]
    cns = [nets[u["model"]] for u in units]
    pipe.controlnet = cns[0] if len(cns) == 1 else MultiControlNetModel(cns)
    cls, kwargs = pf.RECIPES[c["sampler"]]
    image = m.photo(c["photo"], c["width"], c["height"])          # [1, 3, H, W] in [-1, 1]
    put(f"{c['name']}.input", image)
    mask = torch.zeros(1, 1, c["height"], c["width"])
    mask[:, :, c["height"] // 4: 3 * c["height"] // 4, c["width"] // 4: 3 * c["width"] // 4] = 1.0
    extra = {}
    if c["pipeline"] == "inpaint":
        assert torch.equal(pipe.mask_processor.preprocess(mask, height=c["height"], width=c["width"]), mask)
        put(f"{c['name']}.mask", mask)
        extra["mask_image"] = mask
    controls = []
    for j, u in enumerate(units):
        if u["control"] == "tile":
            ctrl = (image + 1) / 2
        elif u["control"] == "inpaint":   # diffusers' documented make_inpaint_condition: masked pixels −1
            ctrl = torch.where(mask > 0.5, torch.full_like(image, -1.0), (image + 1) / 2)
        else:
            ctrl = edges(c["height"], c["width"])
        put(f"{c['name']}.control.{j}", ctrl)
        controls.append(ctrl)
    single = len(units) == 1

    def call(scale):
        pipe.scheduler = cls.from_config(folder_config, **kwargs)
        return pipe(prompt=c["prompt"], negative_prompt=c["negative_prompt"] or None, image=image,
                    control_image=controls[0] if single else controls, height=c["height"], width=c["width"],
                    num_inference_steps=c["steps"], strength=c["strength"], guidance_scale=c["guidance"],
                    controlnet_conditioning_scale=scale,
                    control_guidance_start=units[0]["start"] if single else [u["start"] for u in units],
                    control_guidance_end=units[0]["end"] if single else [u["end"] for u in units],
                    guess_mode=c["guess_mode"], generator=torch.Generator().manual_seed(c["seed"]),
                    output_type="np", **extra).images[0]

    out = call(units[0]["scale"] if single else [u["scale"] for u in units])
    put(f"{c['name']}.image", torch.from_numpy(np.ascontiguousarray(out)))
    bare = call(0.0 if single else [0.0] * len(units))
    effect = float(np.abs(out - bare).max())
    assert effect > 0.02, f"{c['name']}: the control barely changes the image ({effect})"
    print(f"  {c['name']}: max |image − image without control| = {effect:.3f}", flush=True)


@torch.no_grad()
def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for p in OUT.iterdir():
        if p.name != "README.md":
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    tensors: dict[str, torch.Tensor] = {}

    def put(name: str, t: torch.Tensor) -> None:
        assert name not in tensors, name
        tensors[name] = t.detach().float().contiguous().clone()

    unet = load_unet()
    nets = make_controlnets(unet)
    a_folder = OUT / "sdxl_a" / "diffusers"
    nets["sdxl_a"].to(torch.float16).save_pretrained(str(a_folder), safe_serialization=True)
    nets["sdxl_a"].to(torch.float32)
    m.canonicalize_header(a_folder / "diffusion_pytorch_model.safetensors")
    reread = ControlNetModel.from_pretrained(str(a_folder), torch_dtype=torch.float32)
    m.assert_same_dict("sdxl_a folder", nets["sdxl_a"].state_dict(), reread.state_dict())
    m.write_safetensors(OUT / "sdxl_b.safetensors", m.to_dtype(controlnet_to_ldm(nets["sdxl_b"], "control_model."), torch.float16))
    b_config = dict(nets["sdxl_b"].config)
    b_config["_use_default_values"] = sorted(b_config.get("_use_default_values", []))   # a set in diffusers: any order
    (OUT / "sdxl_b_config.json").write_text(json.dumps(b_config, indent=2, sort_keys=True, default=list) + "\n")
    for f in OUT.rglob("config.json"):   # no generating machine's path in the committed configs
        cfg = json.loads(f.read_text())
        cfg.pop("_name_or_path", None)
        f.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")

    for name, net in nets.items():
        model_refs(name, net, unet, put)

    tok1 = CLIPTokenizer.from_pretrained(str(xl.TOKENIZER))
    tok2 = CLIPTokenizer.from_pretrained(str(xl.TOKENIZER), pad_token="!")
    pipe = StableDiffusionXLControlNetImg2ImgPipeline.from_pretrained(
        str(SDXL / "diffusers"), controlnet=nets["sdxl_a"], tokenizer=tok1, tokenizer_2=tok2, torch_dtype=torch.float32,
        add_watermarker=False, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.config.force_zeros_for_empty_prompt and not pipe.config.requires_aesthetics_score
    inpaint = StableDiffusionXLControlNetInpaintPipeline.from_pretrained(
        str(SDXL / "diffusers"), controlnet=nets["sdxl_a"], tokenizer=tok1, tokenizer_2=tok2, torch_dtype=torch.float32,
        add_watermarker=False, local_files_only=True)
    inpaint.set_progress_bar_config(disable=True)
    assert inpaint.config.force_zeros_for_empty_prompt and not inpaint.config.requires_aesthetics_score
    folder_config = json.loads((SDXL / "diffusers" / "scheduler" / "scheduler_config.json").read_text())
    cases = pipeline_cases()
    for c in cases:
        run_case(c, {"img2img": pipe, "inpaint": inpaint}, nets, folder_config, put)

    m.write_safetensors(OUT / "expected.safetensors", tensors,
                        metadata={"generator": GENERATOR, "diffusers": diffusers.__version__, "torch": torch.__version__})
    (OUT / "cases.json").write_text(json.dumps({"generator": GENERATOR, "diffusers": diffusers.__version__,
                                                "cases": cases}, indent=1, sort_keys=True) + "\n")
    for p in sorted(OUT.rglob("*")):
        if p.is_file():
            print(f"  {m.rel(p)}  {p.stat().st_size} bytes")


if __name__ == "__main__":
    main()
