#!/usr/bin/env python3
"""SDXL fixtures that reuse the tiny sdxl model's committed weights (issue 16: 9-channel inpainting, textual-inversion
embeddings with clip_l / clip_g, Turbo-style few-step settings).

Reads Tests/Fixtures/models/sdxl/ (written by make_sdxl_fixtures.py; its diffusers folder is loaded in float32, which
holds exactly the values the in-memory model there had) and writes, each folder deleted and rebuilt:

    models/sdxl_inpaint/   a 9-channel SDXL inpainting UNet as an overlay on the sdxl fixture (see inpaint9()):
                           diffusers/model_index.json, diffusers/unet/config.json, conv_in.safetensors,
                           expected.safetensors (StableDiffusionXLInpaintPipeline runs)

Run from the repo root, after make_sdxl_fixtures.py:

    ~/venv/bin/python tools/reference/make_sdxl_more_fixtures.py            # every part
    ~/venv/bin/python tools/reference/make_sdxl_more_fixtures.py inpaint    # one part
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_model_fixtures as m  # noqa: E402  (sets HF_HUB_OFFLINE, one thread, quiet logging)
import make_sdxl_fixtures as xl  # noqa: E402

import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from diffusers import StableDiffusionXLInpaintPipeline, UNet2DConditionModel  # noqa: E402
from diffusers.loaders import single_file_utils as sfu  # noqa: E402
from transformers import CLIPTokenizer  # noqa: E402

SDXL = m.OUT_DIR / "sdxl"
GENERATOR = "tools/reference/make_sdxl_more_fixtures.py"


def tokenizers() -> tuple[CLIPTokenizer, CLIPTokenizer]:
    tok1 = CLIPTokenizer.from_pretrained(str(xl.TOKENIZER))
    tok2 = CLIPTokenizer.from_pretrained(str(xl.TOKENIZER), pad_token="!")   # SDXL's tokenizer_2 pads with "!" (id 0)
    return tok1, tok2


def scheduler_config() -> dict:
    return json.loads((SDXL / "diffusers" / "scheduler" / "scheduler_config.json").read_text())


def fresh(folder: Path) -> Path:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder


def write_json(path: Path, value: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n")


def listing(folder: Path) -> None:
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            print(f"  {m.rel(p)}  {p.stat().st_size} bytes")


# --------------------------------------------------------------------------------------------------------------------
# 9-channel inpainting
# --------------------------------------------------------------------------------------------------------------------

# The overlay: the sdxl UNet with a 9-channel conv_in (its own seeded weights, rounded as the fixture's), every other
# tensor the sdxl UNet's. A whole second UNet would add 2.6 MB of weights that differ from the committed ones only in
# conv_in; the tests (and inpaint9() below, which takes its references from the assembled copies) assemble it:
#   diffusers: sdxl/diffusers with diffusers/model_index.json and diffusers/unet/config.json of this folder, and in
#              unet/diffusion_pytorch_model.safetensors conv_in.weight / conv_in.bias replaced by conv_in.safetensors';
#   single file: sdxl.safetensors with model.diffusion_model.input_blocks.0.0.weight / .bias replaced likewise.
CONV_IN_KEYS = {"conv_in.weight": "model.diffusion_model.input_blocks.0.0.weight",
                "conv_in.bias": "model.diffusion_model.input_blocks.0.0.bias"}

INPAINT_MASKS = {
    "centre": lambda h, w: (h // 4, 3 * h // 4, w // 4, 3 * w // 4),
    # Odd edges: diffusers' nearest downsampling (every second pixel, from the first) differs from any area rule.
    "odd": lambda h, w: (3, h - 5, 5, w - 9),
}

INPAINT9 = [
    # name, photo, width, height, mask, settings (sampler: make_pipeline_fixtures.py's RECIPES)
    ("xl9_euler_s100", "astronaut", 32, 32, "centre", dict(prompt=xl.PROMPTS[0], strength=1.0, guidance_scale=5.0,
                                                           num_inference_steps=5, seed=3, sampler="euler")),
    # diffusers' default strength for this pipeline (0.9999): the noise is added to the image latents.
    ("xl9_default_strength_ns", "coffee", 32, 24, "odd", dict(prompt=xl.PROMPTS[0], negative_prompt=xl.NEGATIVE,
                                                              strength=0.9999, guidance_scale=7.5,
                                                              num_inference_steps=5, seed=8, sampler="euler")),
    ("xl9_dpmpp_2m_karras_s075_ns", "coffee", 32, 24, "centre", dict(prompt=xl.PROMPTS[0], negative_prompt=xl.NEGATIVE,
                                                                     strength=0.75, guidance_scale=6.0,
                                                                     num_inference_steps=8, seed=21,
                                                                     sampler="dpmpp_2m_karras")),
    ("xl9_euler_a_no_guidance", "astronaut", 32, 32, "odd", dict(prompt=xl.PROMPTS[0], strength=1.0, guidance_scale=1.0,
                                                                 num_inference_steps=4, seed=42, sampler="euler_a")),
    ("xl9_heun_s060", "astronaut", 24, 32, "centre", dict(prompt=xl.PROMPTS[0], prompt_2=xl.PROMPT_2,
                                                          negative_prompt=xl.NEGATIVE, strength=0.6,
                                                          guidance_scale=5.0, num_inference_steps=6, seed=5,
                                                          sampler="heun")),
    ("xl9_unipc_micro", "coffee", 32, 24, "odd", dict(prompt=xl.PROMPTS[0], strength=0.8, guidance_scale=5.0,
                                                      num_inference_steps=6, seed=77, sampler="unipc",
                                                      original_size=(96, 128), crops_coords_top_left=(8, 4),
                                                      target_size=(48, 64))),
]


def assemble_inpaint9(overlay: Path, into: Path) -> tuple[Path, Path]:
    """The 9-channel model in both layouts, as the Swift tests build it: (diffusers folder, single file)."""
    folder = into / "diffusers"
    shutil.copytree(SDXL / "diffusers", folder)
    for name in ("model_index.json", "unet/config.json"):
        shutil.copyfile(overlay / "diffusers" / name, folder / name)
    patch = load_file(str(overlay / "conv_in.safetensors"))
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    m.write_safetensors(weights, dict(load_file(str(weights)), **{k: patch[k] for k in CONV_IN_KEYS}))
    single = into / "sdxl_inpaint.safetensors"
    m.write_safetensors(single, dict(load_file(str(SDXL / "sdxl.safetensors")),
                                     **{ldm: patch[ldm] for ldm in CONV_IN_KEYS.values()}))
    return folder, single


@torch.no_grad()
def inpaint9() -> None:
    """models/sdxl_inpaint/: StableDiffusionXLInpaintPipeline with a 9-channel UNet (as
    diffusers/stable-diffusion-xl-1.0-inpainting-0.1): the UNet sees [latents, mask, masked-image latents]."""
    import make_pipeline_fixtures as pf   # RECIPES (imported here: it configures diffusers' logging)
    out = fresh(m.OUT_DIR / "sdxl_inpaint")
    base = UNet2DConditionModel.from_pretrained(str(SDXL / "diffusers" / "unet"), torch_dtype=torch.float32)
    conv = torch.nn.Conv2d(9, base.config.block_out_channels[0], 3, padding=1)
    m.randomize_(conv, "sdxl_inpaint/conv_in")
    m.round_(conv, "fp16", coarse=True)
    patch = {"conv_in.weight": conv.weight, "conv_in.bias": conv.bias}
    m.write_safetensors(out / "conv_in.safetensors",
                        m.to_dtype(dict(patch, **{CONV_IN_KEYS[k]: v for k, v in patch.items()}), torch.float16))
    unet_config = dict(json.loads((SDXL / "diffusers" / "unet" / "config.json").read_text()), in_channels=9)
    write_json(out / "diffusers" / "unet" / "config.json", unet_config)
    write_json(out / "diffusers" / "model_index.json",
               dict(json.loads((SDXL / "diffusers" / "model_index.json").read_text()),
                    _class_name="StableDiffusionXLInpaintPipeline"))

    # The reference model: diffusers' own loaders on the assembled copies, checked against the intended weights.
    unet9 = UNet2DConditionModel.from_config(unet_config)
    unet9.load_state_dict(dict(base.state_dict(), **patch))
    unet9.eval()
    tok1, tok2 = tokenizers()
    with tempfile.TemporaryDirectory() as tmp:
        folder, single = assemble_inpaint9(out, Path(tmp))
        pipe = StableDiffusionXLInpaintPipeline.from_pretrained(str(folder), tokenizer=tok1, tokenizer_2=tok2,
                                                                torch_dtype=torch.float32, add_watermarker=False)
        ckpt = {k: v.float() for k, v in load_file(str(single)).items() if k.startswith("model.diffusion_model.")}
        m.assert_same_dict("unet9 (convert_ldm_unet_checkpoint)", unet9.state_dict(),
                           sfu.convert_ldm_unet_checkpoint(ckpt, dict(unet9.config)))
    m.assert_same_dict("unet9 (from_pretrained)", unet9.state_dict(), pipe.unet.state_dict())
    assert pipe.config.force_zeros_for_empty_prompt and not pipe.config.requires_aesthetics_score

    refs: dict[str, torch.Tensor] = {}

    def put(name: str, t: torch.Tensor) -> None:
        assert name not in refs, name
        refs[name] = t.detach().float().contiguous()

    folder_config = scheduler_config()
    cases = []

    def run(image, mask, settings, unet=None):
        cls, kwargs = pf.RECIPES[settings["sampler"]]
        pipe.scheduler = cls.from_config(folder_config, **kwargs)
        original = pipe.unet
        pipe.unet = unet or original
        kw = {k: v for k, v in settings.items() if k not in ("seed", "sampler")}
        try:
            return pipe(image=image, mask_image=mask, height=image.shape[2], width=image.shape[3], output_type="np",
                        generator=torch.Generator().manual_seed(settings["seed"]), **kw).images[0]
        finally:
            pipe.unet = original

    for name, photo, width, height, mask_kind, settings in INPAINT9:
        image = m.photo(photo, width, height)
        mask = torch.zeros(1, 1, height, width)
        top, bottom, left, right = INPAINT_MASKS[mask_kind](height, width)
        mask[:, :, top:bottom, left:right] = 1.0
        assert torch.equal(pipe.image_processor.preprocess(image, height=height, width=width), image)
        assert torch.equal(pipe.mask_processor.preprocess(mask, height=height, width=width), mask)
        outputs = [run(image, mask, settings) for _ in range(2)]   # a fresh scheduler and generator each time
        assert (outputs[0] == outputs[1]).all(), name
        put(f"{name}.input", image)
        put(f"{name}.mask", mask)
        put(f"{name}.image", torch.from_numpy(outputs[0]))
        cases.append(dict(name=name, **{k: (list(v) if isinstance(v, tuple) else v) for k, v in settings.items()}))

    # The mask and masked-image channels must visibly matter: the same run with their conv_in weights zeroed.
    name, photo, width, height, mask_kind, settings = INPAINT9[0]
    blind = UNet2DConditionModel.from_config(unet_config)
    blind.load_state_dict(unet9.state_dict())
    blind.conv_in.weight[:, 4:] = 0
    blind.eval()
    effect = abs(run(refs[f"{name}.input"], refs[f"{name}.mask"], settings, unet=blind) - refs[f"{name}.image"].numpy()).max()
    assert effect > 0.01, f"the mask channels barely change the image ({effect})"
    print(f"  sdxl_inpaint: max |image - image without the mask channels| = {effect:.3f}", flush=True)

    m.write_safetensors(out / "expected.safetensors", refs,
                        metadata={"generator": GENERATOR, "inpaint": json.dumps(cases, sort_keys=True)})
    listing(out)


PARTS = {"inpaint": inpaint9}



def main() -> None:
    for name in sys.argv[1:] or list(PARTS):
        PARTS[name]()


if __name__ == "__main__":
    main()
