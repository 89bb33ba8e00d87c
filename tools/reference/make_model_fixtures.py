#!/usr/bin/env python3
"""Generate tiny, seeded Stable Diffusion model fixtures with diffusers references.

Writes Tests/Fixtures/models/ (relative to the repo root; the four variant
folders are deleted and rebuilt on every run, README.md is kept):

    sd1/          SD 1.x: CLIP text encoder, conv-projection UNet, epsilon, PNDM
    sd2v/         SD 2.x 768-v style: OpenCLIP text tower, linear-projection UNet,
                  fixed head size (num_head_channels 32), v_prediction, DDIM
    sd1_inpaint/  SD 1.x inpainting: 9-channel UNet input; BF16 single file
    sd1_wide/     a second, differently shaped SD1 UNet (diffusers layout only)

Each of sd1 / sd2v / sd1_inpaint has
    diffusers/                 a diffusers pipeline folder (save_pretrained), every
                               component stored in float16
    <variant>.safetensors      the same weights as one original-LDM checkpoint
                               (keys model.diffusion_model.* / first_stage_model.* /
                               cond_stage_model.*): float16, except sd1_inpaint's,
                               which is bfloat16 (see "values" below)
    expected.safetensors       float32 reference inputs and outputs
sd1 additionally has the only tokenizer/ folder; sd2v has sd2v.yaml (A1111
convention).

How the weights are made
------------------------
* Every model is built with the real diffusers / transformers classes from a
  config with the real SD block structure (GroupNorm always 32 groups), at
  tiny widths. Every UNet has a level wider than 32 channels (at 32 channels
  each GroupNorm group is one channel and the time embedding cancels).
* ALL parameters are then re-drawn from a per-variant, per-component seeded
  generator (the default init leaves e.g. attention output projections or
  norms at trivial values, which would hide loader mistakes):
      weights (ndim >= 2)        randn / sqrt(fan_in), fan_in = numel / shape[0]
      norm weights (Group/Layer) 1 + 0.1 * randn
      all biases                 0.1 * randn
* Token embeddings: only the rows of token ids that the fixture prompts use
  (including BOS/EOS and, for SD2, the pad id 0) are random; every other row
  of the real 49408-entry vocabulary is zero. The model stays a valid CLIP
  text encoder; the zero rows make the files compress to almost nothing.
* UNet and VAE weight tensors (ndim >= 2) are rounded to 2 significant bits
  (+-{1, 1.5} * 2^e). Random full-precision fp16 barely compresses (gzip:
  ~92%); these compress to ~40%, which is what keeps the fixtures a few MB
  in git. Biases, norm scales and the whole text encoder keep full precision
  (fp16; bf16 for sd1_inpaint), so mantissa decoding is still exercised.
* Then every parameter is rounded to the variant's `values`, BEFORE any
  reference is computed:
      "fp16"  p.half().float()
      "bf16"  (sd1_inpaint) representable in bfloat16 AND float16: values
              below fp16's normal range (2^-14) are flushed to zero, the rest
              rounded to bfloat16; the script asserts x.half().float() == x.
  So the fp16 diffusers folder and the fp16 or bf16 single file hold exactly
  the same values, and all of them must reproduce the references bit-for-bit
  in their weights.

References are computed on the CPU in float32 with torch.set_num_threads(1),
torch.no_grad() and eval mode, with the real diffusers/transformers modules.

Single files are produced by inverting diffusers' own key conversion
(diffusers/loaders/single_file_utils.py) and verified by loading them back
with diffusers (`from_single_file(..., config=<diffusers folder>)`, offline)
and by applying diffusers' convert_* functions; every parameter must equal
the in-memory model's bit for bit, or the script fails.

The output is deterministic: every safetensors header is rewritten with
sorted keys, and running the script twice gives identical bytes.
"""

from __future__ import annotations

import copy
import gzip
import json
import math
import os
import shutil
import sys
import zlib
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from PIL import Image  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

import diffusers  # noqa: E402
import transformers  # noqa: E402
from diffusers import (  # noqa: E402
    AutoencoderKL,
    DDIMScheduler,
    PNDMScheduler,
    StableDiffusionInpaintPipeline,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from diffusers.loaders import single_file_utils as sfu  # noqa: E402
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer  # noqa: E402

diffusers.utils.logging.set_verbosity_error()
transformers.utils.logging.set_verbosity_error()
torch.set_num_threads(1)

REPO_ROOT = Path(__file__).resolve().parents[2]
OUT_DIR = REPO_ROOT / "Tests" / "Fixtures" / "models"
GENERATOR_NAME = "tools/reference/make_model_fixtures.py"

PROMPTS = ["a photograph of an astronaut riding a horse", ""]
# Extra prompts only for tokenizer parity (tokens.extra_ids); their token ids
# are not given embedding rows. The "!!" shows a real diffusers quirk of the
# SD2 tokenizer: "!" is its pad token, so "!!" becomes two pad ids (0, 0)
# where open_clip's tokenizer gives the BPE token 748.
EXTRA_PROMPTS = [
    "A Red FOX, jumping over 3 lazy dogs... (café) [masterpiece:1.2]",
    "wow!! it's a   sunny\tday; don't you think?",
    "long " * 80,
]

SD1_SCHEDULER = dict(
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    num_train_timesteps=1000,
    steps_offset=1,
    skip_prk_steps=True,
    set_alpha_to_one=False,
    prediction_type="epsilon",
    trained_betas=None,
)
# stable-diffusion-2-1 (768-v) ships a DDIMScheduler with these values.
SD2V_SCHEDULER = dict(
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    num_train_timesteps=1000,
    steps_offset=1,
    set_alpha_to_one=False,
    clip_sample=False,
    prediction_type="v_prediction",
    trained_betas=None,
)

VARIANTS = {
    "sd1": dict(
        family="sd1",
        text=dict(hidden_size=4, num_attention_heads=2, num_hidden_layers=2, intermediate_size=16,
                  hidden_act="quick_gelu"),
        unet=dict(
            in_channels=4,
            block_out_channels=(32, 32, 64),
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            layers_per_block=2,
            attention_head_dim=8,  # SD1 configs: this is the number of heads
            use_linear_projection=False,
        ),
        vae=dict(block_out_channels=(32, 32, 32, 32), layers_per_block=2),
        scheduler=("PNDMScheduler", SD1_SCHEDULER),
        pipeline="StableDiffusionPipeline",
        values="fp16",
    ),
    "sd2v": dict(
        family="sd2",
        # OpenCLIP tower: `text_layers_ldm` resblocks in the single file, one
        # fewer in the diffusers text encoder (SD2 uses the penultimate layer).
        # intermediate = 4 * width (open_clip's mlp_ratio).
        text=dict(hidden_size=4, num_attention_heads=2, num_hidden_layers=2, intermediate_size=16,
                  hidden_act="gelu"),
        unet=dict(
            in_channels=4,
            block_out_channels=(32, 64),
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            layers_per_block=1,
            # heads per level = channels / 32 (sd2v.yaml: num_head_channels 32)
            attention_head_dim=(1, 2),
            use_linear_projection=True,
        ),
        vae=dict(block_out_channels=(32, 32, 32, 32), layers_per_block=1),
        scheduler=("DDIMScheduler", SD2V_SCHEDULER),
        pipeline="StableDiffusionPipeline",
        values="fp16",
        diffusers_fp16_variant=True,
    ),
    "sd1_inpaint": dict(
        family="sd1",
        text=dict(hidden_size=4, num_attention_heads=2, num_hidden_layers=1, intermediate_size=16,
                  hidden_act="quick_gelu"),
        unet=dict(
            in_channels=9,
            block_out_channels=(32, 64),
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            layers_per_block=1,
            attention_head_dim=8,
            use_linear_projection=False,
        ),
        vae=dict(block_out_channels=(32, 32, 32, 32), layers_per_block=1),
        scheduler=("PNDMScheduler", SD1_SCHEDULER),
        pipeline="StableDiffusionInpaintPipeline",
        # every value bf16- AND fp16-representable; the single file is stored in BF16
        values="bf16",
    ),
}

WIDE_UNET = dict(
    in_channels=4,
    block_out_channels=(32, 64),
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    layers_per_block=1,
    transformer_layers_per_block=2,
    # per-level head counts: level 0 (32 ch) 2 heads, level 1 / mid (64 ch) 4 heads;
    # the up path takes them reversed, so a loader that forgets that gets 4 heads at 32 ch.
    attention_head_dim=(2, 4),
    use_linear_projection=False,
    cross_attention_dim=24,
)


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def gen(name: str) -> torch.Generator:
    g = torch.Generator(device="cpu")
    g.manual_seed(zlib.crc32(name.encode("utf-8")))
    return g


def randn(g: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=g, dtype=torch.float32)


NORM_TYPES = (torch.nn.GroupNorm, torch.nn.LayerNorm)


@torch.no_grad()
def randomize_(model: torch.nn.Module, seed_name: str) -> None:
    """Re-draw every parameter (see module docstring), in named_modules order."""
    g = gen(seed_name)
    for _, module in model.named_modules():
        is_norm = isinstance(module, NORM_TYPES)
        for pname, p in module.named_parameters(recurse=False):
            if pname == "bias":
                p.copy_(0.1 * randn(g, *p.shape))
            elif is_norm and pname == "weight":
                p.copy_(1.0 + 0.1 * randn(g, *p.shape))
            elif p.ndim >= 2:
                fan_in = p.numel() // p.shape[0]
                p.copy_(randn(g, *p.shape) / math.sqrt(fan_in))
            else:
                raise RuntimeError(f"no init rule for {type(module).__name__}.{pname} {tuple(p.shape)}")


FP16_MIN_NORMAL = 2.0 ** -14  # 6.1e-5


def two_significant_bits(x: torch.Tensor) -> torch.Tensor:
    """x rounded to 2 significant bits: +-{1, 1.5} * 2^e (round half to even)."""
    m, e = torch.frexp(x)                   # x = m * 2^e, 0.5 <= |m| < 1
    return torch.ldexp(torch.round(m * 4) / 4, e)


@torch.no_grad()
def round_(model: torch.nn.Module, values: str, coarse: bool = False) -> None:
    """Round every parameter to the values the fixture files hold exactly.

    values "fp16": float16-representable.
    values "bf16": representable in bfloat16 AND float16: magnitudes below
        fp16's normal range are flushed to zero, then rounded to bf16 (8 bits
        of precision, fp16's normal exponent range holds them all exactly).
    coarse: weight tensors (ndim >= 2) are first rounded to 2 significant
        bits, so the files compress well (see the module docstring); 1-D
        tensors (biases, norm scales) keep full precision."""
    for p in model.parameters():
        x = p.detach().float()
        if coarse and x.ndim >= 2:
            x = two_significant_bits(x)
        if values == "bf16":
            x = torch.where(x.abs() < FP16_MIN_NORMAL, torch.zeros_like(x), x)
            x = x.to(torch.bfloat16).float()
            assert torch.equal(x.half().float(), x), "bf16 value not exact in fp16"
        elif values == "fp16":
            x = x.half().float()
        else:
            raise ValueError(values)
        if coarse and x.ndim >= 2:
            assert torch.equal(two_significant_bits(x), x)
        p.copy_(x)


def canonicalize_header(path: Path) -> None:
    """Rewrite a safetensors JSON header with sorted keys (same length, so the
    data offsets are unchanged; slack is padded with spaces as the format
    allows). Makes the bytes independent of hash-map order in the writer."""
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    canon = json.dumps(header, separators=(",", ":"), sort_keys=True, ensure_ascii=True).encode("utf-8")
    if len(canon) > n:
        raise RuntimeError(f"canonical header longer than original: {path}")
    canon = canon + b" " * (n - len(canon))
    path.write_bytes(raw[:8] + canon + raw[8 + n:])


def write_safetensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    ordered = {k: tensors[k].detach().contiguous().clone() for k in sorted(tensors)}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(ordered, str(path), metadata=metadata)
    canonicalize_header(path)


def rel(p: Path) -> str:
    return str(p.relative_to(REPO_ROOT))


# --------------------------------------------------------------------------
# tokenizer (built offline from the CLIP BPE table that open_clip ships)
# --------------------------------------------------------------------------

def write_clip_tokenizer(folder: Path) -> None:
    """vocab.json / merges.txt exactly as in openai/clip-vit-large-patch14
    (the SD1 tokenizer), derived from the BPE merge list that open_clip
    ships: 256 byte tokens, the same with </w>, 48894 merges, then
    <|startoftext|> = 49406 and <|endoftext|> = 49407."""
    from open_clip.tokenizer import bytes_to_unicode, default_bpe

    lines = gzip.open(default_bpe()).read().decode("utf-8").split("\n")
    merges = [tuple(m.split()) for m in lines[1:49152 - 256 - 2 + 1]]
    byte_tokens = list(bytes_to_unicode().values())
    vocab = byte_tokens + [t + "</w>" for t in byte_tokens] + ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    assert len(vocab) == 49408
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(
        json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
    (folder / "merges.txt").write_text(
        "#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n", encoding="utf-8")
    special = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
               "pad_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}
    cfg = dict(special, add_prefix_space=False, do_lower_case=True, errors="replace",
               model_max_length=77, tokenizer_class="CLIPTokenizer")
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2, sort_keys=True) + "\n")


def load_tokenizer(folder: Path, family: str) -> CLIPTokenizer:
    if family == "sd2":
        # stabilityai/stable-diffusion-2 tokenizer: same vocab/merges, pad "!" (id 0)
        return CLIPTokenizer.from_pretrained(str(folder), pad_token="!")
    return CLIPTokenizer.from_pretrained(str(folder))


def tokenize(tok: CLIPTokenizer, prompts: list[str]) -> torch.Tensor:
    return tok(prompts, padding="max_length", max_length=tok.model_max_length, truncation=True,
               return_tensors="pt").input_ids


# --------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------

def make_text_encoder(variant: str, cfg: dict, used_ids: set[int]) -> CLIPTextModel:
    tc = cfg["text"]
    config = CLIPTextConfig(
        vocab_size=49408,
        max_position_embeddings=77,
        hidden_size=tc["hidden_size"],
        intermediate_size=tc["intermediate_size"],
        num_hidden_layers=tc["num_hidden_layers"],
        num_attention_heads=tc["num_attention_heads"],
        hidden_act=tc["hidden_act"],
        projection_dim=tc["hidden_size"],
        layer_norm_eps=1e-5,
    )
    te = CLIPTextModel(config).eval()
    randomize_(te, f"{variant}/text_encoder")
    with torch.no_grad():
        w = te.embeddings.token_embedding.weight
        keep = torch.zeros(w.shape[0], dtype=torch.bool)
        keep[sorted(used_ids)] = True
        w[~keep] = 0.0
    round_(te, cfg["values"])
    return te


def make_unet(variant: str, ucfg: dict, cross_dim: int, values: str) -> UNet2DConditionModel:
    ucfg = dict(ucfg)
    ucfg.setdefault("cross_attention_dim", cross_dim)
    unet = UNet2DConditionModel(sample_size=8, out_channels=4, norm_num_groups=32, **ucfg).eval()
    randomize_(unet, f"{variant}/unet")
    round_(unet, values, coarse=True)
    return unet


def make_vae(variant: str, vcfg: dict, values: str) -> AutoencoderKL:
    n = len(vcfg["block_out_channels"])
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=32, sample_size=64,
        down_block_types=("DownEncoderBlock2D",) * n, up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=vcfg["block_out_channels"], layers_per_block=vcfg["layers_per_block"],
        scaling_factor=0.18215,
    ).eval()
    randomize_(vae, f"{variant}/vae")
    round_(vae, values, coarse=True)
    return vae


def make_scheduler(cfg: dict):
    name, kw = cfg["scheduler"]
    return {"PNDMScheduler": PNDMScheduler, "DDIMScheduler": DDIMScheduler}[name](**kw)


# --------------------------------------------------------------------------
# diffusers -> original LDM keys (the inverse of diffusers' single_file_utils)
# --------------------------------------------------------------------------

UNET_RESNET = [("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("time_emb_proj", "emb_layers.1"),
               ("norm2", "out_layers.0"), ("conv2", "out_layers.3"), ("conv_shortcut", "skip_connection")]


def unet_to_ldm(unet: UNet2DConditionModel) -> dict[str, torch.Tensor]:
    cfg = unet.config
    lpb = cfg.layers_per_block
    sd = unet.state_dict()
    out: dict[str, torch.Tensor] = {}

    def put(ldm: str, key: str) -> None:
        assert key in sd, key
        assert ldm not in out, ldm
        out["model.diffusion_model." + ldm] = sd.pop(key)

    def resnet(ldm_prefix: str, dif_prefix: str) -> None:
        for k in [k for k in sd if k.startswith(dif_prefix + ".")]:
            rest = k[len(dif_prefix) + 1:]
            for a, b in UNET_RESNET:
                if rest.startswith(a + "."):
                    rest = b + rest[len(a):]
                    break
            else:
                raise KeyError(k)
            put(f"{ldm_prefix}.{rest}", k)

    def attention(ldm_prefix: str, dif_prefix: str) -> None:
        # SpatialTransformer keys are the same in both layouts.
        for k in [k for k in sd if k.startswith(dif_prefix + ".")]:
            put(ldm_prefix + k[len(dif_prefix):], k)

    for a, b in [("time_embedding.linear_1", "time_embed.0"), ("time_embedding.linear_2", "time_embed.2"),
                 ("conv_in", "input_blocks.0.0"), ("conv_norm_out", "out.0"), ("conv_out", "out.2")]:
        for s in ("weight", "bias"):
            put(f"{b}.{s}", f"{a}.{s}")
    if "add_embedding.linear_1.weight" in sd:   # SDXL's added conditioning (addition_embed_type "text_time")
        for a, b in [("add_embedding.linear_1", "label_emb.0.0"), ("add_embedding.linear_2", "label_emb.0.2")]:
            for s in ("weight", "bias"):
                put(f"{b}.{s}", f"{a}.{s}")

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

    i = 0
    for level in range(n_levels):
        has_attn = any(k.startswith(f"up_blocks.{level}.attentions.") for k in sd)
        for j in range(lpb + 1):
            resnet(f"output_blocks.{i}.0", f"up_blocks.{level}.resnets.{j}")
            attention(f"output_blocks.{i}.1", f"up_blocks.{level}.attentions.{j}")
            if j == lpb and level != n_levels - 1:
                slot = 2 if has_attn else 1
                for s in ("weight", "bias"):
                    put(f"output_blocks.{i}.{slot}.conv.{s}", f"up_blocks.{level}.upsamplers.0.conv.{s}")
            i += 1

    assert not sd, f"unconverted UNet keys: {sorted(sd)}"
    return out


VAE_RESNET = [("conv_shortcut", "nin_shortcut")]
VAE_ATTN = [("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out")]


def vae_to_ldm(vae: AutoencoderKL) -> dict[str, torch.Tensor]:
    sd = vae.state_dict()
    out: dict[str, torch.Tensor] = {}
    n = len(vae.config.block_out_channels)

    def put(ldm: str, key: str, t: torch.Tensor | None = None) -> None:
        assert key in sd, key
        v = sd.pop(key)
        out["first_stage_model." + ldm] = v if t is None else t

    def resnet(ldm_prefix: str, dif_prefix: str) -> None:
        for k in [k for k in sd if k.startswith(dif_prefix + ".")]:
            rest = k[len(dif_prefix) + 1:]
            for a, b in VAE_RESNET:
                if rest.startswith(a + "."):
                    rest = b + rest[len(a):]
            put(f"{ldm_prefix}.{rest}", k)

    def attention(ldm_prefix: str, dif_prefix: str) -> None:
        for k in [k for k in sd if k.startswith(dif_prefix + ".")]:
            rest = k[len(dif_prefix) + 1:]
            for a, b in VAE_ATTN:
                if rest.startswith(a + "."):
                    rest = b + rest[len(a):]
                    break
            else:
                raise KeyError(k)
            v = sd[k]
            # LDM stores the attention projections as 1x1 convolutions.
            if rest.endswith(".weight") and not rest.startswith("norm.") and v.ndim == 2:
                v = v[:, :, None, None]
            put(f"{ldm_prefix}.{rest}", k, v)

    for a, b in [("conv_norm_out", "norm_out"), ("conv_in", "conv_in"), ("conv_out", "conv_out")]:
        for part in ("encoder", "decoder"):
            for s in ("weight", "bias"):
                put(f"{part}.{b}.{s}", f"{part}.{a}.{s}")
    for c in ("quant_conv", "post_quant_conv"):
        for s in ("weight", "bias"):
            put(f"{c}.{s}", f"{c}.{s}")

    for lvl in range(n):
        for j in range(vae.config.layers_per_block):
            resnet(f"encoder.down.{lvl}.block.{j}", f"encoder.down_blocks.{lvl}.resnets.{j}")
        if lvl != n - 1:
            for s in ("weight", "bias"):
                put(f"encoder.down.{lvl}.downsample.conv.{s}", f"encoder.down_blocks.{lvl}.downsamplers.0.conv.{s}")
    for part in ("encoder", "decoder"):
        resnet(f"{part}.mid.block_1", f"{part}.mid_block.resnets.0")
        attention(f"{part}.mid.attn_1", f"{part}.mid_block.attentions.0")
        resnet(f"{part}.mid.block_2", f"{part}.mid_block.resnets.1")
    for i in range(n):  # diffusers up_blocks run deepest first; LDM `up` is indexed by level
        lvl = n - 1 - i
        for j in range(vae.config.layers_per_block + 1):
            resnet(f"decoder.up.{lvl}.block.{j}", f"decoder.up_blocks.{i}.resnets.{j}")
        if i != n - 1:
            for s in ("weight", "bias"):
                put(f"decoder.up.{lvl}.upsample.conv.{s}", f"decoder.up_blocks.{i}.upsamplers.0.conv.{s}")
    assert not sd, f"unconverted VAE keys: {sorted(sd)}"
    return out


def clip_to_ldm(te: CLIPTextModel) -> dict[str, torch.Tensor]:
    """SD1: the HF CLIPTextModel state dict under cond_stage_model.transformer.text_model.
    Real SD1.x files also carry the int64 position_ids buffer; so does this one."""
    out = {f"cond_stage_model.transformer.text_model.{k}": v for k, v in te.state_dict().items()}
    out["cond_stage_model.transformer.text_model.embeddings.position_ids"] = torch.arange(77, dtype=torch.int64)[None]
    return out


def openclip_block(out: dict[str, torch.Tensor], b: str, get) -> None:
    """One transformers CLIP encoder layer (`get(key)` reads its tensors) under OpenCLIP's resblock names at `b`:
    q, k and v fused into in_proj, as in SD 2.x and SDXL single files."""
    out[b + "ln_1.weight"] = get("layer_norm1.weight")
    out[b + "ln_1.bias"] = get("layer_norm1.bias")
    out[b + "attn.in_proj_weight"] = torch.cat([get(f"self_attn.{x}_proj.weight") for x in "qkv"], 0)
    out[b + "attn.in_proj_bias"] = torch.cat([get(f"self_attn.{x}_proj.bias") for x in "qkv"], 0)
    out[b + "attn.out_proj.weight"] = get("self_attn.out_proj.weight")
    out[b + "attn.out_proj.bias"] = get("self_attn.out_proj.bias")
    out[b + "ln_2.weight"] = get("layer_norm2.weight")
    out[b + "ln_2.bias"] = get("layer_norm2.bias")
    out[b + "mlp.c_fc.weight"] = get("mlp.fc1.weight")
    out[b + "mlp.c_fc.bias"] = get("mlp.fc1.bias")
    out[b + "mlp.c_proj.weight"] = get("mlp.fc2.weight")
    out[b + "mlp.c_proj.bias"] = get("mlp.fc2.bias")


def open_clip_to_ldm(te: CLIPTextModel, variant: str) -> dict[str, torch.Tensor]:
    """SD2: the OpenCLIP text tower (FrozenOpenCLIPEmbedder) keys. The tower has
    one more resblock than the diffusers text encoder: SD2 takes the
    penultimate block's output, so the last block is never used (random
    here, as trained-but-unused in real checkpoints). text_projection and
    logit_scale are present but unused, as in real SD2 files."""
    sd = te.state_dict()
    W = te.config.hidden_size
    L = te.config.num_hidden_layers
    p = "cond_stage_model.model."
    out = {
        p + "token_embedding.weight": sd["embeddings.token_embedding.weight"],
        p + "positional_embedding": sd["embeddings.position_embedding.weight"],
        p + "ln_final.weight": sd["final_layer_norm.weight"],
        p + "ln_final.bias": sd["final_layer_norm.bias"],
    }

    def block(i: int, get) -> None:
        openclip_block(out, f"{p}transformer.resblocks.{i}.", get)

    for i in range(L):
        block(i, lambda k, i=i: sd[f"encoder.layers.{i}.{k}"])

    # the unused last block, a text_projection and logit_scale: seeded, fp16-representable
    extra = copy.deepcopy(te.encoder.layers[L - 1])
    randomize_(extra, f"{variant}/text_encoder/unused_last_block")
    round_(extra, "fp16")
    esd = extra.state_dict()
    block(L, lambda k: esd[k])
    g = gen(f"{variant}/text_encoder/text_projection")
    out[p + "text_projection"] = (randn(g, W, W) / math.sqrt(W)).half().float()
    out[p + "logit_scale"] = torch.tensor(math.log(1 / 0.07)).half().float()
    return out


def to_dtype(sd: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    return {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in sd.items()}


# --------------------------------------------------------------------------
# verification
# --------------------------------------------------------------------------

def assert_same_params(name: str, ref: torch.nn.Module, got: torch.nn.Module) -> int:
    a, b = ref.state_dict(), got.state_dict()
    assert set(a) == set(b), f"{name}: key sets differ: {sorted(set(a) ^ set(b))[:10]}"
    for k in a:
        if not a[k].is_floating_point():
            continue
        x, y = a[k].float(), b[k].float()
        if x.shape != y.shape or not torch.equal(x, y):
            raise AssertionError(f"{name}: parameter {k} differs")
    return len(a)


def assert_same_dict(name: str, ref: dict, got: dict) -> None:
    assert set(ref) == set(got), f"{name}: key sets differ: {sorted(set(ref) ^ set(got))[:10]}"
    for k in ref:
        if not torch.equal(ref[k].float(), got[k].float()):
            raise AssertionError(f"{name}: {k} differs")


def verify_single_file(variant: str, cfg: dict, path: Path, folder: Path, tok_folder: Path,
                       te: CLIPTextModel, unet, vae, dtype: torch.dtype) -> list[str]:
    """Load the single file back with diffusers and compare every parameter."""
    notes = []
    ckpt = load_file(str(path))
    dtypes = {v.dtype for v in ckpt.values() if v.is_floating_point()}
    assert dtypes == {dtype}, f"{path.name}: float dtypes {dtypes}, want {dtype}"
    ckpt32 = {k: (v.float() if v.is_floating_point() else v) for k, v in ckpt.items()}

    # 1. diffusers' own converters applied to the raw state dict
    assert_same_dict(f"{path.name} unet (convert_ldm_unet_checkpoint)",
                     {k: v for k, v in unet.state_dict().items()},
                     sfu.convert_ldm_unet_checkpoint(ckpt32, dict(unet.config)))
    assert_same_dict(f"{path.name} vae (convert_ldm_vae_checkpoint)",
                     vae.state_dict(), sfu.convert_ldm_vae_checkpoint(ckpt32, dict(vae.config)))
    te_ref = {k: v for k, v in te.state_dict().items()}
    if cfg["family"] == "sd1":
        conv = sfu.convert_ldm_clip_checkpoint(ckpt32)
        conv = {k.removeprefix("text_model."): v for k, v in conv.items()}
        conv.pop("embeddings.position_ids")
        assert_same_dict(f"{path.name} text (convert_ldm_clip_checkpoint)", te_ref, conv)
    else:
        conv = sfu.convert_open_clip_checkpoint(te, ckpt32, prefix="cond_stage_model.model.")
        conv = {k.removeprefix("text_model."): v for k, v in conv.items()}
        L = te.config.num_hidden_layers
        extra = sorted(k for k in conv if k.startswith(f"encoder.layers.{L}."))
        # diffusers only skips the unused block when it is resblocks.23 (ViT-H);
        # for this tower it is converted to encoder.layers.{L}.*, which the
        # L-layer model does not have and load_state_dict(strict=False) drops.
        for k in extra:
            conv.pop(k)
        assert_same_dict(f"{path.name} text (convert_open_clip_checkpoint)", te_ref, conv)
        notes.append(f"convert_open_clip_checkpoint emits {len(extra)} keys encoder.layers.{L}.* for the unused "
                     f"last block (ignored on load)")

    # 2. the public loader, offline, with the local diffusers folder as config
    pipe_cls = {"StableDiffusionPipeline": StableDiffusionPipeline,
                "StableDiffusionInpaintPipeline": StableDiffusionInpaintPipeline}[cfg["pipeline"]]
    kwargs = dict(config=str(folder), local_files_only=True, torch_dtype=torch.float32,
                  safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    if not (folder / "tokenizer").exists():
        kwargs["tokenizer"] = load_tokenizer(tok_folder, cfg["family"])
    pipe = pipe_cls.from_single_file(str(path), **kwargs)
    n = assert_same_params(f"{path.name} unet", unet, pipe.unet)
    n += assert_same_params(f"{path.name} vae", vae, pipe.vae)
    n += assert_same_params(f"{path.name} text_encoder", te, pipe.text_encoder)
    notes.append(f"{pipe_cls.__name__}.from_single_file: {n} tensors equal")
    del pipe
    return notes


@torch.no_grad()
def open_clip_reference(ckpt: dict[str, torch.Tensor], ids: torch.Tensor, width: int, heads: int,
                        layers: int) -> torch.Tensor:
    """What SD2's FrozenOpenCLIPEmbedder(layer="penultimate") computes, with
    open_clip's own residual blocks: all but the last block, then ln_final."""
    from open_clip.transformer import Transformer

    p = "cond_stage_model.model."
    tower = Transformer(width=width, layers=layers, heads=heads, mlp_ratio=4.0, act_layer=torch.nn.GELU,
                        batch_first=True).eval()
    sd = {k[len(p + "transformer."):]: v.float() for k, v in ckpt.items() if k.startswith(p + "transformer.")}
    tower.load_state_dict(sd, strict=True)
    x = torch.nn.functional.embedding(ids, ckpt[p + "token_embedding.weight"].float())
    x = x + ckpt[p + "positional_embedding"].float()
    mask = torch.full((77, 77), float("-inf")).triu(1)
    for r in tower.resblocks[:-1]:
        x = r(x, attn_mask=mask)
    return torch.nn.functional.layer_norm(x, (width,), ckpt[p + "ln_final.weight"].float(),
                                          ckpt[p + "ln_final.bias"].float(), eps=1e-5)


# --------------------------------------------------------------------------
# reference inputs
# --------------------------------------------------------------------------

def photo(name: str, width: int, height: int) -> torch.Tensor:
    from skimage import data

    img = Image.fromarray(getattr(data, name)()).convert("RGB").resize((width, height), Image.LANCZOS)
    a = np.asarray(img, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(a).permute(2, 0, 1)[None].contiguous()


@torch.no_grad()
def unet_refs(variant: str, unet, context: torch.Tensor, put) -> None:
    c = unet.config.in_channels
    g = gen(f"{variant}/unet_inputs")
    sample = randn(g, 2, c, 8, 8)
    sample_ns = randn(g, 2, c, 8, 4)       # H != W
    sample_odd = randn(g, 1, c, 6, 10)     # not a multiple of the UNet's 2^(levels-1): upsample_size path
    t0 = torch.tensor([981.0])
    t1 = torch.tensor([1.0, 500.0])
    put("unet.sample", sample)
    put("unet.context", context)
    put("unet.t0", t0)
    put("unet.out0", unet(sample, t0, encoder_hidden_states=context).sample)
    put("unet.t1", t1)
    put("unet.out1", unet(sample, t1, encoder_hidden_states=context).sample)
    put("unet.sample_ns", sample_ns)
    put("unet.t_ns", t1)
    put("unet.out_ns", unet(sample_ns, t1, encoder_hidden_states=context).sample)
    put("unet.sample_odd", sample_odd)
    put("unet.t_odd", t0)
    put("unet.out_odd", unet(sample_odd, t0, encoder_hidden_states=context[:1]).sample)
    # The timestep must visibly matter. (GroupNorm(32) on a 32-channel level has one
    # channel per group, which cancels the per-channel time embedding added before
    # norm2 exactly; so every UNet here has at least one level wider than 32.)
    effect = (unet(sample, t0, encoder_hidden_states=context).sample
              - unet(sample, torch.tensor([1.0, 1.0]), encoder_hidden_states=context).sample).abs().mean().item()
    assert effect > 0.01, f"{variant}: timestep barely changes the UNet output ({effect})"
    print(f"  {variant}: mean |out(t=981) - out(t=1)| = {effect:.3f}", flush=True)


@torch.no_grad()
def vae_refs(variant: str, vae, put) -> None:
    sf = vae.config.scaling_factor
    img = photo("astronaut", 64, 64)
    img_ns = photo("coffee", 64, 48)       # H=48, W=64
    put("vae.image", img)
    post = vae.encode(img).latent_dist
    put("vae.mean", post.mean)
    put("vae.std", post.std)
    put("vae.image_ns", img_ns)
    post = vae.encode(img_ns).latent_dist
    put("vae.mean_ns", post.mean)
    put("vae.std_ns", post.std)
    g = gen(f"{variant}/vae_inputs")
    lat = randn(g, 1, 4, 8, 8) / sf        # what the pipeline feeds to vae.decode
    lat_ns = randn(g, 1, 4, 6, 8) / sf
    put("vae.latent", lat)
    put("vae.decoded", vae.decode(lat).sample)
    put("vae.latent_ns", lat_ns)
    put("vae.decoded_ns", vae.decode(lat_ns).sample)


def config_summary(cfg: dict, unet, vae, te) -> dict:
    uc, vc, tc = unet.config, vae.config, te.config
    return {
        "unet": {k: (list(v) if isinstance(v, tuple) else v) for k, v in dict(uc).items()
                 if k in ("in_channels", "block_out_channels", "down_block_types", "up_block_types",
                          "layers_per_block", "attention_head_dim", "cross_attention_dim",
                          "use_linear_projection", "transformer_layers_per_block")},
        "vae": {k: (list(v) if isinstance(v, tuple) else v) for k, v in dict(vc).items()
                if k in ("block_out_channels", "layers_per_block", "latent_channels", "scaling_factor")},
        "text_encoder": {"kind": "openclip" if cfg["family"] == "sd2" else "clip",
                         "hidden_size": tc.hidden_size, "num_attention_heads": tc.num_attention_heads,
                         "num_hidden_layers": tc.num_hidden_layers, "intermediate_size": tc.intermediate_size,
                         "hidden_act": tc.hidden_act},
        "scheduler": cfg["scheduler"][0],
        "prediction_type": cfg["scheduler"][1]["prediction_type"],
    }


# --------------------------------------------------------------------------
# variants
# --------------------------------------------------------------------------

def ldm_yaml(cfg: dict, unet, vae, te) -> str:
    uc, vc = unet.config, vae.config
    mc = uc.block_out_channels[0]
    attn_res, ds = [], 1
    for i, t in enumerate(uc.down_block_types):
        if t.startswith("CrossAttn"):
            attn_res.append(ds)
        ds *= 2
    vch = vc.block_out_channels[0]
    # SD2 configs give a fixed head size (num_head_channels); the diffusers config's
    # attention_head_dim holds the resulting per-level head counts.
    head_channels = {c // h for c, h in zip(uc.block_out_channels, uc.attention_head_dim)}
    assert len(head_channels) == 1, head_channels
    head_channels = head_channels.pop()
    doc = {"model": {
        "base_learning_rate": 1.0e-4,
        "target": "ldm.models.diffusion.ddpm.LatentDiffusion",
        "params": {
            "parameterization": "v",
            "linear_start": 0.00085, "linear_end": 0.0120, "num_timesteps_cond": 1, "log_every_t": 200,
            "timesteps": 1000, "first_stage_key": "jpg", "cond_stage_key": "txt", "image_size": 8,
            "channels": 4, "cond_stage_trainable": False, "conditioning_key": "crossattn",
            "monitor": "val/loss_simple_ema", "scale_factor": 0.18215, "use_ema": False,
            "unet_config": {"target": "ldm.modules.diffusionmodules.openaimodel.UNetModel", "params": {
                "use_checkpoint": True, "use_fp16": True, "image_size": 32,
                "in_channels": uc.in_channels, "out_channels": uc.out_channels, "model_channels": mc,
                "attention_resolutions": sorted(attn_res, reverse=True),
                "num_res_blocks": uc.layers_per_block,
                "channel_mult": [c // mc for c in uc.block_out_channels],
                "num_head_channels": head_channels, "use_linear_in_transformer": True, "transformer_depth": 1,
                "context_dim": uc.cross_attention_dim, "legacy": False}},
            "first_stage_config": {"target": "ldm.models.autoencoder.AutoencoderKL", "params": {
                "embed_dim": 4, "monitor": "val/rec_loss",
                "ddconfig": {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3,
                             "out_ch": 3, "ch": vch, "ch_mult": [c // vch for c in vc.block_out_channels],
                             "num_res_blocks": vc.layers_per_block, "attn_resolutions": [], "dropout": 0.0},
                "lossconfig": {"target": "torch.nn.Identity"}}},
            "cond_stage_config": {"target": "ldm.modules.encoders.modules.FrozenOpenCLIPEmbedder",
                                  "params": {"freeze": True, "layer": "penultimate"}},
        }}}
    head = ("# LDM config for Tests/Fixtures/models/sd2v/sd2v.safetensors (A1111 convention: same name as the\n"
            "# checkpoint, .yaml). Shaped like stable-diffusion v2-inference-v.yaml with this fixture's sizes.\n"
            f"# Text tower: OpenCLIP, width {te.config.hidden_size}, {te.config.num_attention_heads} heads, "
            f"{te.config.num_hidden_layers + 1} resblocks (the last is unused: layer=penultimate), gelu.\n"
            f"# Written by {GENERATOR_NAME}.\n")
    return head + yaml.safe_dump(doc, sort_keys=False, default_flow_style=None)


def build_variant(variant: str, cfg: dict, tok_folder: Path, report: dict) -> None:
    vdir = OUT_DIR / variant
    folder = vdir / "diffusers"
    tok = load_tokenizer(tok_folder, cfg["family"])
    ids = tokenize(tok, PROMPTS)
    extra_ids = tokenize(tok, EXTRA_PROMPTS)
    if cfg["family"] == "sd2":
        import open_clip  # cross-check: same ids as open_clip's tokenizer for the fixture prompts
        assert torch.equal(open_clip.tokenize(PROMPTS), ids), "SD2 tokenizer disagrees with open_clip"
        assert ids[0, -1].item() == 0
    else:
        assert ids[0, -1].item() == 49407
    used = set(ids.flatten().tolist())

    te = make_text_encoder(variant, cfg, used)
    unet = make_unet(variant, cfg["unet"], te.config.hidden_size, cfg["values"])
    vae = make_vae(variant, cfg["vae"], cfg["values"])
    sched = make_scheduler(cfg)

    # ---- diffusers folder
    pipe_cls = {"StableDiffusionPipeline": StableDiffusionPipeline,
                "StableDiffusionInpaintPipeline": StableDiffusionInpaintPipeline}[cfg["pipeline"]]
    # Every component is stored in fp16 (the values are fp16-exact). sd2v uses the
    # diffusers "fp16" variant file names (*.fp16.safetensors); sd1 and sd1_inpaint
    # use the plain names with F16 data (a torch_dtype=float16 save).
    fp16_variant = cfg.get("diffusers_fp16_variant", False)
    with_tok = variant == "sd1"
    pipe = pipe_cls(vae=copy.deepcopy(vae).half(), text_encoder=copy.deepcopy(te).half(),
                    tokenizer=tok if with_tok else None,
                    unet=copy.deepcopy(unet).half(), scheduler=sched,
                    safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(str(folder), safe_serialization=True, variant="fp16" if fp16_variant else None)
    # transformers >= 5.6 saves CLIPTextModel keys without the "text_model." prefix;
    # the text encoders of the real SD repos have it, so write them that way
    # (transformers loads either; the reload check below confirms it).
    for f in (folder / "text_encoder").glob("*.safetensors"):
        sd = load_file(str(f))
        write_safetensors(f, {k if k.startswith("text_model.") else "text_model." + k: v for k, v in sd.items()},
                          {"format": "pt"})
    if with_tok:
        # replace save_pretrained's tokenizer.json with the classic 4 files of the SD repos
        shutil.rmtree(folder / "tokenizer")
        write_clip_tokenizer(folder / "tokenizer")
    del pipe

    # reload what was written and check it is the same model
    var = "fp16" if fp16_variant else None
    re_unet = UNet2DConditionModel.from_pretrained(str(folder), subfolder="unet", variant=var,
                                                   torch_dtype=torch.float32)
    re_vae = AutoencoderKL.from_pretrained(str(folder), subfolder="vae", variant=var, torch_dtype=torch.float32)
    re_te = CLIPTextModel.from_pretrained(str(folder), subfolder="text_encoder", torch_dtype=torch.float32,
                                          variant=var)
    assert_same_params(f"{variant} diffusers unet", unet, re_unet)
    assert_same_params(f"{variant} diffusers vae", vae, re_vae)
    assert_same_params(f"{variant} diffusers text_encoder", te, re_te)

    # ---- single file (original LDM keys): fp16, or BF16 for values="bf16" (sd1_inpaint)
    text_ldm = clip_to_ldm(te) if cfg["family"] == "sd1" else open_clip_to_ldm(te, variant)
    ldm = {**unet_to_ldm(unet), **vae_to_ldm(vae), **text_ldm}
    sf_path = vdir / f"{variant}.safetensors"
    sf_dtype = torch.bfloat16 if cfg["values"] == "bf16" else torch.float16
    write_safetensors(sf_path, to_dtype(ldm, sf_dtype))
    notes = verify_single_file(variant, cfg, sf_path, folder, tok_folder, te, unet, vae, sf_dtype)

    if cfg["family"] == "sd2":
        (vdir / f"{variant}.yaml").write_text(ldm_yaml(cfg, unet, vae, te))
        # the yaml must give back this UNet/VAE through diffusers' own LDM-config reader
        oc = yaml.safe_load((vdir / f"{variant}.yaml").read_text())
        ucfg = sfu.create_unet_diffusers_config_from_ldm(oc, ldm)
        for k in ("in_channels", "down_block_types", "up_block_types", "block_out_channels", "layers_per_block",
                  "cross_attention_dim", "attention_head_dim", "use_linear_projection"):
            a, b = ucfg[k], unet.config[k]
            assert (list(a) if isinstance(a, (list, tuple)) else a) == (list(b) if isinstance(b, (list, tuple)) else b), (k, a, b)
        vcfg = sfu.create_vae_diffusers_config_from_ldm(oc, ldm)
        for k in ("block_out_channels", "layers_per_block", "latent_channels", "scaling_factor"):
            a, b = vcfg[k], vae.config[k]
            assert (list(a) if isinstance(a, (list, tuple)) else a) == (list(b) if isinstance(b, (list, tuple)) else b), (k, a, b)
        notes.append("sd2v.yaml -> create_unet/vae_diffusers_config_from_ldm reproduces the UNet/VAE config")

    # ---- references
    tensors: dict[str, torch.Tensor] = {}

    def put(name: str, t: torch.Tensor) -> None:
        assert name not in tensors, name
        t = t.detach().float().contiguous().clone()
        assert torch.isfinite(t).all(), name
        tensors[name] = t

    with torch.no_grad():
        put("tokens.ids", ids.float())
        put("tokens.extra_ids", extra_ids.float())
        hidden = te(ids).last_hidden_state
        put("text.hidden", hidden)
        if cfg["family"] == "sd2":
            oc_hidden = open_clip_reference(load_file(str(sf_path)), ids, te.config.hidden_size,
                                            te.config.num_attention_heads, te.config.num_hidden_layers + 1)
            err = (oc_hidden - hidden).abs().max().item()
            assert err < 1e-5, err
            notes.append(f"open_clip tower (penultimate + ln_final) matches diffusers text encoder: max |diff| {err:.1e}")
        unet_refs(variant, unet, hidden, put)
        vae_refs(variant, vae, put)

    meta = {
        "generator": GENERATOR_NAME,
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "variant": variant,
        "prompts": json.dumps(PROMPTS),
        "extra_prompts": json.dumps(EXTRA_PROMPTS),
        "config": json.dumps(config_summary(cfg, unet, vae, te), sort_keys=True, separators=(",", ":")),
    }
    write_safetensors(vdir / "expected.safetensors", tensors, meta)
    report[variant] = {"notes": notes, "tensors": {k: list(v.shape) for k, v in sorted(tensors.items())},
                       "config": config_summary(cfg, unet, vae, te)}


def build_wide(report: dict) -> None:
    variant = "sd1_wide"
    vdir = OUT_DIR / variant
    unet = make_unet(variant, WIDE_UNET, WIDE_UNET["cross_attention_dim"], "fp16")
    # stored in float16 under the plain file name (a torch_dtype=float16 save)
    copy.deepcopy(unet).half().save_pretrained(str(vdir / "diffusers" / "unet"), safe_serialization=True)
    re_unet = UNet2DConditionModel.from_pretrained(str(vdir / "diffusers"), subfolder="unet",
                                                   torch_dtype=torch.float32)
    assert_same_params("sd1_wide unet", unet, re_unet)
    tensors: dict[str, torch.Tensor] = {}

    def put(name: str, t: torch.Tensor) -> None:
        t = t.detach().float().contiguous().clone()
        assert torch.isfinite(t).all(), name
        tensors[name] = t

    g = gen(f"{variant}/context")
    context = randn(g, 2, 77, WIDE_UNET["cross_attention_dim"])
    unet_refs(variant, unet, context, put)
    uc = unet.config
    summary = {"unet": {k: (list(v) if isinstance(v, tuple) else v) for k, v in dict(uc).items()
                        if k in ("in_channels", "block_out_channels", "down_block_types", "up_block_types",
                                 "layers_per_block", "attention_head_dim", "cross_attention_dim",
                                 "use_linear_projection", "transformer_layers_per_block")}}
    meta = {"generator": GENERATOR_NAME, "torch": torch.__version__, "diffusers": diffusers.__version__,
            "variant": variant, "config": json.dumps(summary, sort_keys=True, separators=(",", ":"))}
    write_safetensors(vdir / "expected.safetensors", tensors, meta)
    report[variant] = {"notes": [], "tensors": {k: list(v.shape) for k, v in sorted(tensors.items())},
                       "config": summary}


def main() -> None:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for v in [*VARIANTS, "sd1_wide"]:  # README.md beside them is kept
        if (OUT_DIR / v).exists():
            shutil.rmtree(OUT_DIR / v)
    tok_folder = OUT_DIR / "sd1" / "diffusers" / "tokenizer"
    write_clip_tokenizer(tok_folder)

    report: dict = {}
    for variant, cfg in VARIANTS.items():
        build_variant(variant, cfg, tok_folder, report)
        print(f"built {variant}", flush=True)
    build_wide(report)
    print("built sd1_wide", flush=True)

    for p in sorted(OUT_DIR.rglob("*.safetensors")):
        canonicalize_header(p)
    if "--report" in sys.argv:
        print(json.dumps(report, indent=1))
    else:
        for v, r in report.items():
            for n in r["notes"]:
                print(f"  {v}: {n}")
    total = 0
    for p in sorted(OUT_DIR.rglob("*")):
        if p.is_file():
            total += p.stat().st_size
            print(f"{p.stat().st_size:>10}  {rel(p)}")
    print(f"{total:>10}  total")


if __name__ == "__main__":
    main()
