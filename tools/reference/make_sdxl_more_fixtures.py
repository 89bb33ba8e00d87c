#!/usr/bin/env python3
"""SDXL fixtures that reuse the tiny sdxl model's committed weights (issue 16: 9-channel inpainting, textual-inversion
embeddings with clip_l / clip_g, Turbo-style few-step settings).

Reads Tests/Fixtures/models/sdxl/ (written by make_sdxl_fixtures.py; its diffusers folder is loaded in float32, which
holds exactly the values the in-memory model there had) and writes, each folder deleted and rebuilt:

    models/sdxl_inpaint/   a 9-channel SDXL inpainting UNet as an overlay on the sdxl fixture (see inpaint9()):
                           diffusers/model_index.json, diffusers/unet/config.json, conv_in.safetensors,
                           expected.safetensors (StableDiffusionXLInpaintPipeline runs)
    models/sdxl_embeddings/ SDXL textual-inversion embeddings (clip_l + clip_g, see embeddings()), and
                           expected.safetensors (encode_prompt after diffusers' load_textual_inversion per encoder)
    models/sdxl_turbo/     expected.safetensors: SDXL-Turbo-style img2img runs (see turbo())
    models/sdxl_job/       expected.safetensors: the img2img a service job's recipe asks for (see job())

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


# --------------------------------------------------------------------------------------------------------------------
# textual-inversion embeddings with clip_l and clip_g
# --------------------------------------------------------------------------------------------------------------------

# name → vector count; each file holds clip_l [n, text_encoder width] and clip_g [n, text_encoder_2 width]
SDXL_EMBEDDINGS = {"xlemb": 1, "xltrio": 3, "xlpt": 2}
EMBEDDING_CASES = [
    # name, prompt, negative prompt (None: diffusers' zeros, force_zeros_for_empty_prompt)
    ("te0", "a photograph of xlemb riding a horse", None),
    ("te1", "xltrio, an astronaut riding a horse", "blurry, xlemb, low quality"),
    ("te2", "an oil painting of xlpt and xlemb", "xltrio"),
]


@torch.no_grad()
def embeddings() -> None:
    """models/sdxl_embeddings/: A1111 / ComfyUI SDXL embedding files and diffusers' prompt embeddings with them.

    Files (tiny widths: clip_l 4 = text_encoder's, clip_g 8 = text_encoder_2's):
        xlemb.safetensors   {clip_l: [1, 4] F32, clip_g: [1, 8] F32}
        xltrio.safetensors  {clip_g: [3, 8] F16, clip_l: [3, 4] F16}
        xlpt.pt             torch.save({"clip_g": [2, 8], "clip_l": [2, 4]}) float32
        hostile/uneven.safetensors  clip_l [2, 4], clip_g [1, 8] (vector counts differ)
        hostile/xlsd1.safetensors   {emb_params: [1, 4]}: an SD 1.x-style embedding whose width is clip_l's

    diffusers (as its docs load SDXL embeddings): pipe.load_textual_inversion(sd["clip_l"], token=name,
    text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer) and the same with clip_g, text_encoder_2, tokenizer_2;
    then encode_prompt(prompt, negative_prompt) with guidance. Per case <te>:
        <te>.prompt_embeds, <te>.negative_prompt_embeds  [1, 77, 12]  diffusers' encode_prompt
        <te>.pooled_diffusers                            [1, 6]       diffusers' pooled_prompt_embeds
        <te>.pooled, <te>.negative_pooled                [1, 6]       text_encoder_2 on diffusers' ids, pooled at the
                                                                      first end token (49407), text_projection
    The pooled output differs: the SDXL text encoders' configs carry the legacy eos_token_id 2, so transformers pools
    at argmax(ids), which with an added token (id >= 49408) is the embedding's last token instead of the end token.
    A1111 (whose embedding positions hold id 0) and Darkroom pool at the end token; `<te>.pooled` is that rule on
    diffusers' own hidden states.
    """
    out = fresh(m.OUT_DIR / "sdxl_embeddings")
    tok1, tok2 = tokenizers()
    from diffusers import StableDiffusionXLImg2ImgPipeline
    pipe = StableDiffusionXLImg2ImgPipeline.from_pretrained(str(SDXL / "diffusers"), tokenizer=tok1, tokenizer_2=tok2,
                                                            torch_dtype=torch.float32, add_watermarker=False)
    widths = {"clip_l": pipe.text_encoder.config.hidden_size, "clip_g": pipe.text_encoder_2.config.hidden_size}
    g = m.gen("sdxl_embeddings")
    files = {}
    for name, count in SDXL_EMBEDDINGS.items():
        files[name] = {key: m.randn(g, count, width) for key, width in widths.items()}
    m.write_safetensors(out / "xlemb.safetensors", files["xlemb"])
    files["xltrio"] = {k: v.half().float() for k, v in files["xltrio"].items()}
    m.write_safetensors(out / "xltrio.safetensors", m.to_dtype(files["xltrio"], torch.float16))
    torch.save(files["xlpt"], str(out / "xlpt.pt"))
    m.write_safetensors(out / "hostile" / "uneven.safetensors",
                        {"clip_l": m.randn(g, 2, widths["clip_l"]), "clip_g": m.randn(g, 1, widths["clip_g"])})
    m.write_safetensors(out / "hostile" / "xlsd1.safetensors", {"emb_params": m.randn(g, 1, widths["clip_l"])})

    for name, parts in files.items():
        pipe.load_textual_inversion(parts["clip_l"], token=name, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer)
        pipe.load_textual_inversion(parts["clip_g"], token=name, text_encoder=pipe.text_encoder_2,
                                    tokenizer=pipe.tokenizer_2)

    refs: dict[str, torch.Tensor] = {}

    def put(key: str, t: torch.Tensor) -> None:
        assert key not in refs, key
        refs[key] = t.detach().float().contiguous()

    def pooled_at_end_token(prompt: str) -> torch.Tensor:
        ids = pipe.tokenizer_2(pipe.maybe_convert_prompt(prompt, pipe.tokenizer_2), padding="max_length",
                               max_length=77, truncation=True, return_tensors="pt").input_ids
        hidden = pipe.text_encoder_2(ids).last_hidden_state
        end = int((ids[0] == 49407).int().argmax())
        return pipe.text_encoder_2.text_projection(hidden[:, end])

    cases = []
    for case, prompt, negative in EMBEDDING_CASES:
        pe, npe, ppe, nppe = pipe.encode_prompt(prompt, device="cpu", num_images_per_prompt=1,
                                                do_classifier_free_guidance=True, negative_prompt=negative)
        put(f"{case}.prompt_embeds", pe)
        put(f"{case}.negative_prompt_embeds", npe)
        put(f"{case}.pooled_diffusers", ppe)
        put(f"{case}.pooled", pooled_at_end_token(prompt))
        put(f"{case}.negative_pooled", pooled_at_end_token(negative) if negative is not None else nppe)
        difference = (refs[f"{case}.pooled"] - ppe).abs().max().item()
        print(f"  sdxl_embeddings {case}: max |pooled at the end token - diffusers' pooled| = {difference:.3f}")
        cases.append(dict(name=case, prompt=prompt, negative_prompt=negative))
    # The embeddings must matter: the first prompt with the name as plain text.
    plain = pipe.__class__.from_pretrained(str(SDXL / "diffusers"), *(), **dict(zip(("tokenizer", "tokenizer_2"), tokenizers())),
                                           torch_dtype=torch.float32, add_watermarker=False)
    effect = (plain.encode_prompt(EMBEDDING_CASES[0][1], device="cpu", num_images_per_prompt=1,
                                  do_classifier_free_guidance=False)[0] - refs["te0.prompt_embeds"]).abs().max().item()
    assert effect > 0.01, effect
    m.write_safetensors(out / "expected.safetensors", refs,
                        metadata={"generator": GENERATOR, "cases": json.dumps(cases, sort_keys=True),
                                  "embeddings": json.dumps(SDXL_EMBEDDINGS, sort_keys=True)})
    listing(out)


# --------------------------------------------------------------------------------------------------------------------
# Turbo-style settings
# --------------------------------------------------------------------------------------------------------------------

TURBO = [
    # name, photo, width, height, settings. SDXL-Turbo's documented img2img: EulerAncestralDiscreteScheduler with
    # timestep_spacing "trailing" (its scheduler_config.json), guidance_scale 0.0, 2 steps at strength 0.5 (1 run).
    ("turbo_2x050", "astronaut", 32, 32, dict(prompt=xl.PROMPTS[0], strength=0.5, guidance_scale=0.0,
                                              num_inference_steps=2, seed=1)),
    # 4 steps at 0.5 (2 run), guidance 1 with a negative prompt: no unconditional pass, the negative prompt unused.
    ("turbo_4x050_negative_ns", "coffee", 32, 24, dict(prompt=xl.PROMPTS[0], negative_prompt=xl.NEGATIVE, strength=0.5,
                                                       guidance_scale=1.0, num_inference_steps=4, seed=2)),
    # 1 step from noise (strength 1): the first and only timestep is 999.
    ("turbo_1x100", "astronaut", 24, 32, dict(prompt=xl.PROMPTS[0], strength=1.0, guidance_scale=0.0,
                                              num_inference_steps=1, seed=3)),
]


@torch.no_grad()
def turbo() -> None:
    """models/sdxl_turbo/: StableDiffusionXLImg2ImgPipeline on the sdxl fixture with SDXL-Turbo's settings: the
    folder's scheduler config as EulerAncestralDiscreteScheduler with timestep_spacing "trailing", guidance <= 1.
    expected.safetensors (metadata `img2img`): <case>.input [1, 3, H, W], <case>.image [H, W, 3], <case>.timesteps
    (the scheduler's timesteps after the strength cut)."""
    from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionXLImg2ImgPipeline
    out = fresh(m.OUT_DIR / "sdxl_turbo")
    tok1, tok2 = tokenizers()
    pipe = StableDiffusionXLImg2ImgPipeline.from_pretrained(str(SDXL / "diffusers"), tokenizer=tok1, tokenizer_2=tok2,
                                                            torch_dtype=torch.float32, add_watermarker=False)
    refs: dict[str, torch.Tensor] = {}
    cases = []
    for name, photo, width, height, settings in TURBO:
        image = m.photo(photo, width, height)
        kw = {k: v for k, v in settings.items() if k != "seed"}
        outputs = []
        for _ in range(2):
            pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(scheduler_config(), timestep_spacing="trailing")
            outputs.append(pipe(image=image, generator=torch.Generator().manual_seed(settings["seed"]), output_type="np",
                                **kw).images[0])
        assert (outputs[0] == outputs[1]).all(), name
        assert not pipe.do_classifier_free_guidance, name
        refs[f"{name}.input"] = image.contiguous()
        refs[f"{name}.image"] = torch.from_numpy(outputs[0]).contiguous()
        refs[f"{name}.timesteps"] = pipe.scheduler.timesteps[-pipe.num_timesteps:].float().contiguous()
        print(f"  sdxl_turbo {name}: timesteps {refs[f'{name}.timesteps'].tolist()}", flush=True)
        cases.append(dict(name=name, sampler="euler_a", timestep_spacing="trailing", **settings))
    m.write_safetensors(out / "expected.safetensors", refs,
                        metadata={"generator": GENERATOR, "img2img": json.dumps(cases, sort_keys=True)})
    listing(out)


JOB_PROMPT = "a photograph of an astronaut riding a horse"
JOB = dict(strength=0.6, num_inference_steps=6, guidance_scale=7.5, seed=1234)


def job() -> None:
    """models/sdxl_job/: StableDiffusionXLImg2ImgPipeline on the sdxl fixture with what the service job of
    SDXLJobTests asks for: Tests/Fixtures/pipelines/inputs/photo.png (64 x 64), the folder's scheduler as
    EulerDiscreteScheduler, 6 steps x 0.6, guidance 7.5 with the base's zeroed empty negative prompt, seed 1234.
    expected.safetensors: `job.image` [H, W, 3] (output_type "np"), and `job_vae.image` with the VAE override
    Tests/Fixtures/vae/tiny-vae."""
    import numpy as np
    from PIL import Image
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLImg2ImgPipeline
    out = fresh(m.OUT_DIR / "sdxl_job")
    tok1, tok2 = tokenizers()
    pipe = StableDiffusionXLImg2ImgPipeline.from_pretrained(str(SDXL / "diffusers"), tokenizer=tok1, tokenizer_2=tok2,
                                                            torch_dtype=torch.float32, add_watermarker=False)
    pipe.scheduler = EulerDiscreteScheduler.from_config(scheduler_config())
    photo = Image.open(m.OUT_DIR.parent / "pipelines" / "inputs" / "photo.png").convert("RGB")
    kw = {k: v for k, v in JOB.items() if k != "seed"}
    image = pipe(JOB_PROMPT, image=photo, generator=torch.Generator().manual_seed(JOB["seed"]), output_type="np",
                 **kw).images[0]
    # The same with a VAE override (as an fp16-fix VAE is used): the vae fixture's tiny-vae folder, whose own
    # config's scaling factor (0.18215) replaces the checkpoint's 0.13025. Given at load (`vae=`), as diffusers
    # documents it: the pipeline's vae_scale_factor then comes from this VAE (8; the sdxl fixture's own is 2), which
    # assigning `pipe.vae` afterwards would leave behind.
    from diffusers import AutoencoderKL
    vae = AutoencoderKL.from_pretrained(str(m.OUT_DIR.parent / "vae" / "tiny-vae"), torch_dtype=torch.float32)
    pipe = StableDiffusionXLImg2ImgPipeline.from_pretrained(str(SDXL / "diffusers"), vae=vae, tokenizer=tok1,
                                                            tokenizer_2=tok2, torch_dtype=torch.float32,
                                                            add_watermarker=False)
    pipe.scheduler = EulerDiscreteScheduler.from_config(scheduler_config())
    with_vae = pipe(JOB_PROMPT, image=photo, generator=torch.Generator().manual_seed(JOB["seed"]), output_type="np",
                    **kw).images[0]
    assert abs(with_vae - image).max() > 0.05, "the VAE override does not change the image"
    m.write_safetensors(out / "expected.safetensors", {"job.image": torch.from_numpy(np.ascontiguousarray(image)).float(),
                                                       "job_vae.image": torch.from_numpy(np.ascontiguousarray(with_vae)).float()},
                        metadata={"generator": GENERATOR, "job": json.dumps(dict(prompt=JOB_PROMPT, sampler="euler", **JOB),
                                                                            sort_keys=True)})
    listing(out)


PARTS = {"inpaint": inpaint9, "embeddings": embeddings, "turbo": turbo, "job": job}


def main() -> None:
    for name in sys.argv[1:] or list(PARTS):
        PARTS[name]()


if __name__ == "__main__":
    main()
