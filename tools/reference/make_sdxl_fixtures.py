#!/usr/bin/env python3
"""Generate a tiny, seeded SDXL model fixture with diffusers references.

Writes Tests/Fixtures/models/sdxl/ (deleted and rebuilt on every run):

    diffusers/            a diffusers StableDiffusionXL folder (save_pretrained, float16):
                          unet/, vae/, text_encoder/ (CLIPTextModel), text_encoder_2/
                          (CLIPTextModelWithProjection), scheduler/, model_index.json
    sdxl.safetensors      the same weights as one original (SGM) single file, float16:
                          model.diffusion_model.* (with label_emb.0.0/0.2 for the added
                          conditioning), first_stage_model.*,
                          conditioner.embedders.0.transformer.text_model.* (CLIP ViT-L style),
                          conditioner.embedders.1.model.* (OpenCLIP ViT-bigG style, every
                          resblock, text_projection [width, projection] and logit_scale)
    expected.safetensors  float32 reference inputs and outputs (see the Tests/Fixtures/models README)

The weights follow make_model_fixtures.py (its helpers are imported): every
parameter re-drawn from a seeded generator, UNet/VAE weight tensors rounded to
2 significant bits, everything rounded to fp16 values, token-embedding rows
that no fixture prompt uses set to zero. The architecture is SDXL's at tiny
widths: a first UNet level without attention, per-level transformer depth,
linear projections, `addition_embed_type: "text_time"`, two text encoders
whose penultimate hidden states are concatenated, the second one's pooled and
projected output, VAE scaling factor 0.13025.

The single file is made by inverting diffusers' key conversion and checked
with diffusers' own converters (convert_ldm_unet_checkpoint,
convert_ldm_vae_checkpoint, convert_ldm_clip_checkpoint,
convert_open_clip_checkpoint with the SDXL prefix): every parameter must be
equal, or the script fails.

Run from the repo root (after make_model_fixtures.py, whose sd1 tokenizer folder it reads):

    ~/venv/bin/python tools/reference/make_sdxl_fixtures.py
"""

from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_model_fixtures as m  # noqa: E402  (sets HF_HUB_OFFLINE, one thread, quiet logging)

import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLImg2ImgPipeline, UNet2DConditionModel  # noqa: E402
from diffusers.loaders import single_file_utils as sfu  # noqa: E402
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer  # noqa: E402

VARIANT = "sdxl"
OUT = m.OUT_DIR / VARIANT
TOKENIZER = m.OUT_DIR / "sd1" / "diffusers" / "tokenizer"
PROMPTS = ["a photograph of an astronaut riding a horse", ""]
NEGATIVE = "blurry, low quality"
PROMPT_2 = "an oil painting"

TEXT_1 = dict(hidden_size=4, intermediate_size=16, num_hidden_layers=2, num_attention_heads=2, hidden_act="quick_gelu")
TEXT_2 = dict(hidden_size=8, intermediate_size=32, num_hidden_layers=3, num_attention_heads=2, hidden_act="gelu",
              projection_dim=6)
ADD_TIME_DIM = 8
UNET = dict(
    in_channels=4, out_channels=4, sample_size=8, norm_num_groups=32,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    block_out_channels=(32, 64), layers_per_block=1,
    transformer_layers_per_block=(1, 2),   # level 0 has no attention; the mid block takes the last entry
    attention_head_dim=(2, 4),             # head counts per level (diffusers' historical name)
    use_linear_projection=True,
    cross_attention_dim=TEXT_1["hidden_size"] + TEXT_2["hidden_size"],
    addition_embed_type="text_time", addition_time_embed_dim=ADD_TIME_DIM,
    projection_class_embeddings_input_dim=TEXT_2["projection_dim"] + 6 * ADD_TIME_DIM,
)
VAE_SCALING = 0.13025


def used_ids(tokenizers, prompts) -> set[int]:
    ids: set[int] = {0, 49406, 49407}
    for tok in tokenizers:
        for p in prompts:
            ids.update(tok(p).input_ids)
    return ids


def text_config(tc: dict, eos: int) -> CLIPTextConfig:
    return CLIPTextConfig(vocab_size=49408, max_position_embeddings=77, layer_norm_eps=1e-5,
                          projection_dim=tc.get("projection_dim", tc["hidden_size"]),
                          bos_token_id=0, eos_token_id=eos, pad_token_id=1,
                          **{k: v for k, v in tc.items() if k != "projection_dim"})


def finish_text(te, name: str, ids: set[int]):
    te.eval()
    m.randomize_(te, f"{VARIANT}/{name}")
    with torch.no_grad():
        w = getattr(te, "text_model", te).embeddings.token_embedding.weight
        keep = torch.zeros(w.shape[0], dtype=torch.bool)
        keep[sorted(ids)] = True
        w[~keep] = 0.0
    m.round_(te, "fp16")
    return te


def bigg_to_ldm(te: CLIPTextModelWithProjection, prefix: str) -> dict[str, torch.Tensor]:
    """The OpenCLIP ViT-bigG tower of an SGM SDXL file: every resblock (SDXL takes hidden_states[-2] and the
    pooled output after the last block), `text_projection` stored [width, projection] (OpenCLIP's x @ P;
    diffusers transposes it into `text_projection.weight`), and `logit_scale`."""
    sd = te.state_dict()
    p = prefix
    out = {
        p + "token_embedding.weight": sd["text_model.embeddings.token_embedding.weight"],
        p + "positional_embedding": sd["text_model.embeddings.position_embedding.weight"],
        p + "ln_final.weight": sd["text_model.final_layer_norm.weight"],
        p + "ln_final.bias": sd["text_model.final_layer_norm.bias"],
        p + "text_projection": sd["text_projection.weight"].T.contiguous(),
        p + "logit_scale": torch.tensor(math.log(1 / 0.07)).half().float(),
    }
    for i in range(te.config.num_hidden_layers):
        def get(k: str) -> torch.Tensor:
            return sd[f"text_model.encoder.layers.{i}.{k}"]
        m.openclip_block(out, f"{p}transformer.resblocks.{i}.", get)
    return out


def with_text_model(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers >= 5.6 drops CLIPTextModel's "text_model." prefix; the real SDXL repos and files have it."""
    return {k if k.startswith("text_model.") or k.startswith("text_projection") else "text_model." + k: v
            for k, v in sd.items()}


def verify_single_file(path: Path, te1, te2, unet, vae) -> None:
    ckpt = {k: (v.float() if v.is_floating_point() else v) for k, v in load_file(str(path)).items()}
    # (infer_diffusers_model_type cannot be asked: its "xl_base" marker is resblocks.9 of the bigG tower, which
    # this 3-block tower does not have.)
    m.assert_same_dict("unet (convert_ldm_unet_checkpoint)", unet.state_dict(),
                       sfu.convert_ldm_unet_checkpoint(ckpt, dict(unet.config)))
    m.assert_same_dict("vae (convert_ldm_vae_checkpoint)", vae.state_dict(),
                       sfu.convert_ldm_vae_checkpoint(ckpt, dict(vae.config)))
    conv1 = sfu.convert_ldm_clip_checkpoint(ckpt, remove_prefix="conditioner.embedders.0.transformer.")
    m.assert_same_dict("text_encoder (convert_ldm_clip_checkpoint)", with_text_model(te1.state_dict()), conv1)
    conv2 = sfu.convert_open_clip_checkpoint(te2, ckpt, prefix="conditioner.embedders.1.model.")
    m.assert_same_dict("text_encoder_2 (convert_open_clip_checkpoint)", te2.state_dict(), conv2)


IMG2IMG = [
    # name, photo, width, height, settings (diffusers __call__ arguments besides image/generator/output_type)
    ("xl_euler_s06", "astronaut", 32, 32, dict(prompt=PROMPTS[0], strength=0.6, guidance_scale=5.0,
                                               num_inference_steps=5, seed=1234)),
    ("xl_negative_ns", "coffee", 32, 24, dict(prompt=PROMPTS[0], negative_prompt=NEGATIVE, strength=0.8,
                                              guidance_scale=7.5, num_inference_steps=5, seed=7)),
    ("xl_no_guidance", "astronaut", 32, 32, dict(prompt=PROMPTS[0], strength=0.5, guidance_scale=1.0,
                                                 num_inference_steps=4, seed=42)),
    # Micro-conditioning given; diffusers' negative time ids take the positive crop (negative_crops_coords_top_left
    # is only read with requires_aesthetics_score), so the one given here must not matter.
    ("xl_micro", "coffee", 32, 24, dict(prompt=PROMPTS[0], prompt_2=PROMPT_2, negative_prompt=NEGATIVE, strength=0.6,
                                        guidance_scale=5.0, num_inference_steps=5, seed=99,
                                        original_size=(96, 128), crops_coords_top_left=(8, 4), target_size=(48, 64),
                                        negative_original_size=(32, 32), negative_crops_coords_top_left=(2, 2),
                                        negative_target_size=(24, 24))),
]


# Every Darkroom sampler at one strength (make_pipeline_fixtures.py's table: recipe name → diffusers scheduler class
# and from_config arguments, applied to the folder's scheduler config as there).
SAMPLER_CASES = [(f"xl_sampler_{recipe}", "astronaut", 32, 32,
                  dict(prompt=PROMPTS[0], negative_prompt=NEGATIVE, strength=0.6, guidance_scale=5.0,
                       num_inference_steps=6, seed=2024, sampler=recipe))
                 for recipe in ["ddim", "pndm", "lms", "euler", "euler_a", "dpmpp_2m", "euler_karras", "lms_karras",
                                "dpmpp_2m_karras", "dpmpp_2m_sde", "dpmpp_2m_sde_karras", "unipc", "heun", "dpm2",
                                "dpm2_karras", "dpm2_a", "dpm2_a_karras", "lcm"]]


# Keys of stabilityai/stable-diffusion-xl-base-1.0's scheduler_config.json that EulerDiscreteScheduler itself does not
# write but other schedulers built from_config read (PNDM: skip_prk_steps; DDIM: set_alpha_to_one, clip_sample).
REAL_SCHEDULER_KEYS = {"skip_prk_steps": True, "set_alpha_to_one": False, "clip_sample": False, "sample_max_value": 1.0}


def finish_scheduler_config(folder: Path) -> dict:
    """Adds REAL_SCHEDULER_KEYS to the folder's scheduler config, as the real SDXL file has them; returns the config."""
    path = folder / "scheduler" / "scheduler_config.json"
    config = dict(json.loads(path.read_text()), **REAL_SCHEDULER_KEYS)
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return config


@torch.no_grad()
def img2img_cases(pipe, put, table=IMG2IMG, folder_config=None) -> list[dict]:
    import make_pipeline_fixtures as pf   # its RECIPES table (imported here: it configures diffusers' logging)
    cases = []
    original = pipe.scheduler
    for name, photo, width, height, settings in table:
        image = m.photo(photo, width, height)                  # [1, 3, H, W] in [-1, 1]
        assert torch.equal(pipe.image_processor.preprocess(image), image)
        sampler = settings.get("sampler", "euler")
        cls, kwargs = pf.RECIPES[sampler]
        kw = {k: v for k, v in settings.items() if k not in ("seed", "sampler")}
        outputs = []
        for _ in range(2):   # a fresh scheduler and generator each time: the same image
            pipe.scheduler = cls.from_config(folder_config, **kwargs)
            outputs.append(pipe(image=image, generator=torch.Generator().manual_seed(settings["seed"]), output_type="np",
                                **kw).images[0])
        pipe.scheduler = original
        assert (outputs[0] == outputs[1]).all(), name
        put(f"{name}.input", image)
        put(f"{name}.image", torch.from_numpy(outputs[0]))      # [H, W, 3] float in [0, 1]
        cases.append(dict(name=name, sampler=sampler,
                          **{k: (list(v) if isinstance(v, tuple) else v) for k, v in settings.items() if k != "sampler"}))
    return cases


WEIGHTED = [
    "a (photograph:1.3) of an [astronaut] riding a ((horse)), oil painting",
    "masterpiece, " + ", ".join(f"detail {i}" for i in range(40)) + ", (sharp focus:1.4) BREAK a red (fox:0.7)",
]


def a1111_tokenize_line():
    """make_tokenizer_fixtures.py's port of A1111's `tokenize_line` (open_clip stubbed when absent: only its prompt
    parser is used, as make_embedding_fixtures.py does)."""
    try:
        import open_clip.tokenizer  # noqa: F401
    except ImportError:
        import types
        stub = types.ModuleType("open_clip.tokenizer")
        stub.SimpleTokenizer = stub.bytes_to_unicode = stub.default_bpe = None
        sys.modules["open_clip"] = types.ModuleType("open_clip")
        sys.modules["open_clip.tokenizer"] = stub
    from make_tokenizer_fixtures import tokenize_line
    return tokenize_line


@torch.no_grad()
def weighted_refs(pipe, put, tok1, tok2) -> None:
    """A1111's SDXL conditioning for weighted, chunked prompts (`sd_hijack_clip.py::process_tokens` on each embedder
    of `sd_models_xl.py`'s conditioner): per tower, each 75-token chunk (A1111's `tokenize_line`, padded with the
    tower's pad id: 49407 for CLIP ViT-L, 0 for OpenCLIP) encoded to `hidden_states[-2]`, multiplied by its token
    weights and rescaled to the chunk's original mean, chunks concatenated; the towers concatenated along channels;
    the pooled output the bigG tower's for the first chunk, unweighted."""
    tokenize_line = a1111_tokenize_line()
    for index, prompt in enumerate(WEIGHTED):
        towers, pooled = [], None
        for encoder, tok, pad in [(pipe.text_encoder, tok1, 49407), (pipe.text_encoder_2, tok2, 0)]:
            pairs = tokenize_line(tok, prompt, pad_token=pad)
            parts = []
            for chunk, (ids, weights) in enumerate(pairs):
                out = encoder(torch.tensor([list(ids)]), output_hidden_states=True)
                if chunk == 0 and hasattr(out, "text_embeds"):
                    pooled = out.text_embeds
                z = out.hidden_states[-2]
                original_mean = z.mean()
                z = z * torch.tensor(list(weights), dtype=z.dtype)[None, :, None]
                parts.append(z * (original_mean / z.mean()))
            towers.append(torch.cat(parts, dim=1))
        put(f"weighted{index}.prompt_embeds", torch.cat(towers, dim=-1))
        put(f"weighted{index}.pooled", pooled)


INPAINT = [
    # StableDiffusionXLInpaintPipeline on the 4-channel base UNet (the latent blend), a centre rectangle repainted.
    ("xl_inpaint_s075", "astronaut", 32, 32, dict(prompt=PROMPTS[0], strength=0.75, guidance_scale=5.0,
                                                  num_inference_steps=6, seed=3)),
    ("xl_inpaint_s100_ns", "coffee", 32, 24, dict(prompt=PROMPTS[0], negative_prompt=NEGATIVE, strength=1.0,
                                                  guidance_scale=7.5, num_inference_steps=5, seed=8)),
]


@torch.no_grad()
def inpaint_cases(pipe, put, folder_config) -> list[dict]:
    from diffusers import StableDiffusionXLInpaintPipeline
    inpaint = StableDiffusionXLInpaintPipeline(**{k: v for k, v in pipe.components.items() if k in (
        "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "unet", "scheduler")},
        requires_aesthetics_score=False, force_zeros_for_empty_prompt=True, add_watermarker=False)
    cases = []
    for name, photo, width, height, settings in INPAINT:
        image = m.photo(photo, width, height)
        mask = torch.zeros(1, 1, height, width)
        mask[:, :, height // 4: 3 * height // 4, width // 4: 3 * width // 4] = 1.0
        assert torch.equal(inpaint.image_processor.preprocess(image, height=height, width=width), image)
        assert torch.equal(inpaint.mask_processor.preprocess(mask, height=height, width=width), mask)
        kw = {k: v for k, v in settings.items() if k != "seed"}
        outputs = []
        for _ in range(2):
            inpaint.scheduler = EulerDiscreteScheduler.from_config(folder_config)
            outputs.append(inpaint(image=image, mask_image=mask, height=height, width=width, output_type="np",
                                   generator=torch.Generator().manual_seed(settings["seed"]), **kw).images[0])
        assert (outputs[0] == outputs[1]).all(), name
        put(f"{name}.input", image)
        put(f"{name}.mask", mask)
        put(f"{name}.image", torch.from_numpy(outputs[0]))
        cases.append(dict(name=name, sampler="euler", **settings))
    return cases


REFINER_UNET = dict(UNET, transformer_layers_per_block=(1, 1), cross_attention_dim=TEXT_2["hidden_size"],
                    projection_class_embeddings_input_dim=TEXT_2["projection_dim"] + 5 * ADD_TIME_DIM)
REFINER_IMG2IMG = [
    # The refiner's defaults: aesthetic_score 6, negative_aesthetic_score 2.5; no negative prompt is "" (the refiner
    # does not force zeros).
    ("xlr_defaults", "astronaut", 32, 32, dict(prompt=PROMPTS[0], strength=0.3, guidance_scale=5.0,
                                               num_inference_steps=10, seed=5)),
    # Given scores and sizes; with aesthetic scores diffusers reads negative_crops_coords_top_left.
    ("xlr_scores", "coffee", 32, 24, dict(prompt=PROMPTS[0], negative_prompt=NEGATIVE, strength=0.5, guidance_scale=7.5,
                                          num_inference_steps=6, seed=11, aesthetic_score=7.5,
                                          negative_aesthetic_score=1.5, original_size=(96, 128),
                                          crops_coords_top_left=(8, 4), negative_original_size=(32, 32),
                                          negative_crops_coords_top_left=(2, 6))),
]


@torch.no_grad()
def build_refiner(te2, vae, scheduler, tok2) -> None:
    """sdxl_refiner/: the refiner's shape (OpenCLIP bigG alone as text_encoder_2, aesthetic-score time ids: 5, not 6)
    with the base fixture's bigG tower and VAE (byte-identical files, stored once by git) and its own UNet; a
    diffusers folder only (the single-file refiner layout is tested by renaming the base file's keys)."""
    out = m.OUT_DIR / "sdxl_refiner"
    if out.exists():
        shutil.rmtree(out)
    unet = UNet2DConditionModel(**REFINER_UNET).eval()
    m.randomize_(unet, "sdxl_refiner/unet")
    m.round_(unet, "fp16", coarse=True)
    kw = dict(vae=vae, text_encoder=None, text_encoder_2=te2, tokenizer=None, unet=unet, scheduler=scheduler,
              requires_aesthetics_score=True, force_zeros_for_empty_prompt=False, add_watermarker=False)
    pipe = StableDiffusionXLImg2ImgPipeline(tokenizer_2=tok2, **kw)
    half = StableDiffusionXLImg2ImgPipeline(tokenizer_2=None, **kw)
    half.to(torch.float16)
    half.save_pretrained(str(out / "diffusers"), safe_serialization=True)
    half.to(torch.float32)
    for f in (out / "diffusers").rglob("config.json"):
        cfg = json.loads(f.read_text())
        cfg.pop("_name_or_path", None)
        f.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    refs: dict[str, torch.Tensor] = {}

    def put(name: str, t: torch.Tensor) -> None:
        assert name not in refs, name
        refs[name] = t.detach().float().contiguous()
    cases = img2img_cases(pipe, put, REFINER_IMG2IMG, folder_config=finish_scheduler_config(out / "diffusers"))
    # The scores must visibly matter.
    _, photo, width, height, settings = REFINER_IMG2IMG[0]
    image = m.photo(photo, width, height)
    kw = {k: v for k, v in settings.items() if k != "seed"}
    other = pipe(image=image, generator=torch.Generator().manual_seed(settings["seed"]), output_type="np",
                 aesthetic_score=1.0, **kw).images[0]
    effect = abs(other - refs["xlr_defaults.image"].numpy()).max()
    assert effect > 0.01, f"the aesthetic score barely changes the refiner's image ({effect})"
    print(f"  sdxl_refiner: max |image(score 6) - image(score 1)| = {effect:.3f}", flush=True)
    m.write_safetensors(out / "expected.safetensors", refs,
                        metadata={"generator": "tools/reference/make_sdxl_fixtures.py",
                                  "img2img": json.dumps(cases, sort_keys=True)})
    for p in sorted(out.rglob("*")):
        if p.is_file():
            print(f"  {m.rel(p)}  {p.stat().st_size} bytes")


LORA_MODULES = [
    # kohya name, diffusers module (for the shapes), rank, alpha
    ("lora_te1_text_model_encoder_layers_0_self_attn_q_proj", "text_encoder", "text_model.encoder.layers.0.self_attn.q_proj", 2, 1.0),
    ("lora_te2_text_model_encoder_layers_1_self_attn_k_proj", "text_encoder_2", "text_model.encoder.layers.1.self_attn.k_proj", 2, 2.0),
    ("lora_te2_text_model_encoder_layers_2_mlp_fc1", "text_encoder_2", "text_model.encoder.layers.2.mlp.fc1", 4, 4.0),
    # input_blocks.3.1 = down_blocks.1.attentions.0 (layers_per_block 1), as kohya names SDXL UNet modules.
    ("lora_unet_input_blocks_3_1_transformer_blocks_1_attn2_to_k", "unet", "down_blocks.1.attentions.0.transformer_blocks.1.attn2.to_k", 2, 1.5),
    ("lora_unet_output_blocks_0_1_proj_in", "unet", "up_blocks.0.attentions.0.proj_in", 2, 2.0),
]


@torch.no_grad()
def lora_refs(pipe, put, sample, t0, context, text_embeds, time_ids) -> None:
    """sdxl/lora_kohya.safetensors (kohya layout: lora_te1_/lora_te2_, lora_unet_ with LDM names, fp16) and the
    patched models' outputs."""
    import copy
    g = m.gen(f"{VARIANT}/lora")
    modules = {"text_encoder": pipe.text_encoder, "text_encoder_2": pipe.text_encoder_2, "unet": pipe.unet}
    lora = {}
    for name, component, path, rank, alpha in LORA_MODULES:
        model = modules[component]
        weight = model.get_submodule(path.removeprefix("text_model.") if not hasattr(model, "text_model") else path).weight
        out_features, in_features = weight.shape[0], weight.shape[1]
        lora[f"{name}.lora_down.weight"] = (m.randn(g, rank, in_features) / math.sqrt(in_features)).half()
        lora[f"{name}.lora_up.weight"] = (m.randn(g, out_features, rank) * 0.5).half()
        lora[f"{name}.alpha"] = torch.tensor(alpha).half()
    path = OUT / "lora_kohya.safetensors"
    m.write_safetensors(path, lora)
    # diffusers 0.42.1's load_lora_weights refuses this file's text-encoder part ("Could not automatically infer
    # state dict type": its CLIPTextModel has no text_model. prefix under transformers 5), so the reference merges
    # kohya's rule by hand in float64, W + (alpha / rank) · up @ down, on the modules LORA_MODULES names (the LDM
    # UNet names map as diffusers' single-file conversion, checked above, maps them).
    patched = copy.deepcopy(pipe)
    for name, component, module_path, rank, alpha in LORA_MODULES:
        model = getattr(patched, component)
        if component == "text_encoder" and not hasattr(model, "text_model"):
            module_path = module_path.removeprefix("text_model.")
        weight = model.get_submodule(module_path).weight
        up, down = lora[f"{name}.lora_up.weight"].double(), lora[f"{name}.lora_down.weight"].double()
        weight.copy_((weight.double() + (float(lora[f"{name}.alpha"]) / rank) * (up @ down)).float())
    pe, npe, ppe, nppe = patched.encode_prompt(PROMPTS[0], device="cpu", num_images_per_prompt=1,
                                               do_classifier_free_guidance=True, negative_prompt=NEGATIVE)
    put("lora.prompt_embeds", pe)
    put("lora.negative_prompt_embeds", npe)
    put("lora.pooled_prompt_embeds", ppe)
    put("lora.unet.out0", patched.unet(sample, t0, encoder_hidden_states=context,
                                       added_cond_kwargs={"text_embeds": text_embeds, "time_ids": time_ids}).sample)


@torch.no_grad()
def main() -> None:
    tok1 = CLIPTokenizer.from_pretrained(str(TOKENIZER))
    tok2 = CLIPTokenizer.from_pretrained(str(TOKENIZER), pad_token="!")   # SDXL's tokenizer_2 pads with "!" (id 0)
    ids = used_ids([tok1, tok2], PROMPTS + [NEGATIVE, PROMPT_2] + WEIGHTED)

    # Real SDXL text-encoder configs carry the legacy eos_token_id 2: the pooled token is argmax(ids), the first
    # end token.
    te1 = finish_text(CLIPTextModel(text_config(TEXT_1, eos=2)), "text_encoder", ids)
    te2 = finish_text(CLIPTextModelWithProjection(text_config(TEXT_2, eos=2)), "text_encoder_2", ids)
    unet = UNet2DConditionModel(**UNET).eval()
    m.randomize_(unet, f"{VARIANT}/unet")
    m.round_(unet, "fp16", coarse=True)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=32, sample_size=64,
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        block_out_channels=(32, 32), layers_per_block=1, scaling_factor=VAE_SCALING,
                        force_upcast=False).eval()
    m.randomize_(vae, f"{VARIANT}/vae")
    m.round_(vae, "fp16", coarse=True)
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       num_train_timesteps=1000, steps_offset=1, timestep_spacing="leading",
                                       prediction_type="epsilon")

    if OUT.exists():
        shutil.rmtree(OUT)
    folder = OUT / "diffusers"
    pipe = StableDiffusionXLImg2ImgPipeline(vae=vae, text_encoder=te1, text_encoder_2=te2, tokenizer=tok1,
                                            tokenizer_2=tok2, unet=unet, scheduler=scheduler,
                                            requires_aesthetics_score=False, force_zeros_for_empty_prompt=True,
                                            add_watermarker=False)
    half = StableDiffusionXLImg2ImgPipeline(vae=vae, text_encoder=te1, text_encoder_2=te2, tokenizer=None,
                                            tokenizer_2=None, unet=unet, scheduler=scheduler,
                                            requires_aesthetics_score=False, force_zeros_for_empty_prompt=True,
                                            add_watermarker=False)
    half.to(torch.float16)
    half.save_pretrained(str(folder), safe_serialization=True)
    half.to(torch.float32)
    for f in (folder / "text_encoder").glob("*.safetensors"):
        m.write_safetensors(f, with_text_model(load_file(str(f))), {"format": "pt"})
    for f in folder.rglob("config.json"):   # no generating machine's path in the committed configs
        cfg = json.loads(f.read_text())
        cfg.pop("_name_or_path", None)
        f.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    scheduler_config = finish_scheduler_config(folder)

    single = {}
    single.update(m.unet_to_ldm(unet))
    single.update(m.vae_to_ldm(vae))
    single.update({f"conditioner.embedders.0.transformer.{k}": v for k, v in with_text_model(te1.state_dict()).items()})
    single.update(bigg_to_ldm(te2, "conditioner.embedders.1.model."))
    path = OUT / f"{VARIANT}.safetensors"
    m.write_safetensors(path, m.to_dtype(single, torch.float16))
    verify_single_file(path, te1, te2, unet, vae)

    refs: dict[str, torch.Tensor] = {}

    def put(name: str, t: torch.Tensor) -> None:
        assert name not in refs, name
        refs[name] = t.detach().float().contiguous()

    # Text encoders, each on its own tokenizer's ids.
    ids1, ids2 = m.tokenize(tok1, PROMPTS), m.tokenize(tok2, PROMPTS)
    put("tokens.ids", ids1.float())
    put("tokens.ids_2", ids2.float())
    out1 = te1(ids1, output_hidden_states=True)
    out2 = te2(ids2, output_hidden_states=True)
    put("text.penultimate", out1.hidden_states[-2])
    put("text.last", out1.last_hidden_state)
    put("text_2.penultimate", out2.hidden_states[-2])
    put("text_2.pooled", out2.text_embeds)

    # encode_prompt as StableDiffusionXLImg2ImgPipeline does it (guidance on).
    cases = {
        "none": dict(negative_prompt=None),                 # force_zeros_for_empty_prompt: zeros
        "empty": dict(negative_prompt=""),                  # "" is encoded, not zeroed
        "negative": dict(negative_prompt=NEGATIVE),
        "prompt_2": dict(prompt_2=PROMPT_2, negative_prompt=NEGATIVE, negative_prompt_2=""),
    }
    for name, kw in cases.items():
        pe, npe, ppe, nppe = pipe.encode_prompt(PROMPTS[0], device="cpu", num_images_per_prompt=1,
                                                do_classifier_free_guidance=True, **kw)
        put(f"encode.{name}.prompt_embeds", pe)
        put(f"encode.{name}.negative_prompt_embeds", npe)
        put(f"encode.{name}.pooled_prompt_embeds", ppe)
        put(f"encode.{name}.negative_pooled_prompt_embeds", nppe)

    # UNet with the added conditioning (text_embeds, time_ids).
    g = m.gen(f"{VARIANT}/unet_inputs")
    context = m.randn(g, 2, 77, UNET["cross_attention_dim"])
    text_embeds = m.randn(g, 2, TEXT_2["projection_dim"])
    time_ids = torch.tensor([[64.0, 64.0, 0.0, 0.0, 64.0, 64.0], [96.0, 48.0, 8.0, 16.0, 64.0, 32.0]])
    sample = m.randn(g, 2, 4, 8, 8)
    sample_ns = m.randn(g, 2, 4, 8, 4)
    t0, t1 = torch.tensor([981.0]), torch.tensor([1.0, 500.0])
    put("unet.context", context)
    put("unet.text_embeds", text_embeds)
    put("unet.time_ids", time_ids)
    put("unet.sample", sample)
    put("unet.sample_ns", sample_ns)
    put("unet.t0", t0)
    put("unet.t1", t1)

    def run(x, t):
        return unet(x, t, encoder_hidden_states=context,
                    added_cond_kwargs={"text_embeds": text_embeds, "time_ids": time_ids}).sample
    put("unet.out0", run(sample, t0))
    put("unet.out1", run(sample, t1))
    put("unet.out_ns", run(sample_ns, t1))
    # The added conditioning must visibly matter.
    other = unet(sample, t0, encoder_hidden_states=context,
                 added_cond_kwargs={"text_embeds": text_embeds, "time_ids": time_ids.flip(0)}).sample
    effect = (other - refs["unet.out0"]).abs().mean().item()
    assert effect > 0.01, f"time_ids barely change the UNet output ({effect})"
    print(f"  sdxl: mean |out(time_ids) - out(time_ids swapped)| = {effect:.3f}", flush=True)

    # Whole img2img runs of StableDiffusionXLImg2ImgPipeline (fp32, the folder's EulerDiscreteScheduler).
    cases = img2img_cases(pipe, put, IMG2IMG + SAMPLER_CASES, folder_config=scheduler_config)
    inpaints = inpaint_cases(pipe, put, scheduler_config)
    weighted_refs(pipe, put, tok1, tok2)

    # A kohya SDXL LoRA (lora_te1_, lora_te2_, lora_unet_ with LDM names), loaded by diffusers' own converter.
    lora_refs(pipe, put, sample, t0, context, text_embeds, time_ids)

    meta = {"generator": "tools/reference/make_sdxl_fixtures.py", "prompts": json.dumps(PROMPTS),
            "negative_prompt": NEGATIVE, "prompt_2": PROMPT_2, "img2img": json.dumps(cases, sort_keys=True),
            "inpaint": json.dumps(inpaints, sort_keys=True), "weighted_prompts": json.dumps(WEIGHTED)}
    m.write_safetensors(OUT / "expected.safetensors", refs, metadata=meta)
    for p in sorted(OUT.rglob("*")):
        if p.is_file():
            print(f"  {m.rel(p)}  {p.stat().st_size} bytes")
    build_refiner(te2, vae, scheduler, tok2)


if __name__ == "__main__":
    main()
