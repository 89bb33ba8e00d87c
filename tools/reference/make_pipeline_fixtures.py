#!/usr/bin/env python3
"""Whole-pipeline reference fixtures: diffusers img2img and inpaint on the tiny models.

Writes Tests/Fixtures/pipelines/ (relative to the repo root; README.md there is
kept, everything else is rewritten):

    inputs/photo.png      skimage astronaut(), PIL LANCZOS to 64x64, RGB 8-bit
    inputs/photo_ns.png   skimage coffee(), PIL LANCZOS to 64 wide x 48 high
    inputs/mask.png       64x64 L: 255 on the rectangle x 16..47, y 20..51 (inclusive), 0 elsewhere
    inputs/mask_ns.png    64x48 L: 255 inside an ellipse (see make_inputs), 0 elsewhere
    cases.json            every case with all of its settings, the scheduler's
                          effective config, the timesteps run and the generator
                          draws observed
    expected.safetensors  float32, named <case>.<role>

Every case is one call of StableDiffusionImg2ImgPipeline or
StableDiffusionInpaintPipeline (diffusers 0.42.1), built from the model
fixtures' diffusers folders (Tests/Fixtures/models/<variant>/diffusers) in
float32 with safety_checker=None, feature_extractor=None,
requires_safety_checker=False, and called with
generator=torch.Generator("cpu").manual_seed(seed) (a fresh generator per
call) and output_type="np" (the crop case: "pil", which diffusers requires).
The scheduler of each case is SchedulerClass.from_config(<the folder's
scheduler config>, **kwargs), as a diffusers user would build it.

Roles stored per case:
    image          the pipeline's output, [H, W, 3] float32 in [0, 1], not quantised
                   (crop case: the final pasted-back PIL output / 255, which IS quantised)
    image_crop     crop case only: the generated crop before it is pasted back
                   ([64, 64, 3], float, not quantised)
    latents_start  what prepare_latents returned (after add_noise, or noise *
                   init_noise_sigma for inpaint at strength 1), [1, 4, h, w]
    latents_final  the latents after the last step (incl. the 4-channel inpaint
                   blend); vae.decode receives exactly latents_final / 0.18215
    init_latents   0.18215 * posterior sample of the (init) image, when the
                   pipeline encodes it (img2img; inpaint 4-ch, or 9-ch with strength < 1)
    noise          the noise drawn by prepare_latents
    mask_latent    inpaint: the mask at latent size [1, 1, h, w] (nearest), what the UNet / blend sees
    masked_image_latents  inpaint: 0.18215 * posterior sample of the masked image
    prompt_embeds  first case only: [2, 77, W], what goes into the UNet:
                   row 0 = negative (uncond), row 1 = prompt (cond)

References run on the CPU in float32 with torch.set_num_threads(1) and the
default ATen CPU capability. The output is deterministic: the safetensors
header is rewritten with sorted keys; running twice gives identical bytes.

    ~/venv/bin/python tools/reference/make_pipeline_fixtures.py
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import sys
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

import diffusers  # noqa: E402
import transformers  # noqa: E402
from diffusers import (  # noqa: E402
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    KDPM2AncestralDiscreteScheduler,
    KDPM2DiscreteScheduler,
    LCMScheduler,
    LMSDiscreteScheduler,
    PNDMScheduler,
    UniPCMultistepScheduler,
    StableDiffusionImg2ImgPipeline,
    StableDiffusionInpaintPipeline,
)
from diffusers.utils import torch_utils as _torch_utils  # noqa: E402
from transformers import CLIPTokenizer  # noqa: E402

# make sure every module that may draw noise is imported before we hook randn_tensor
import diffusers.models.autoencoders.vae  # noqa: E402,F401
import diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_img2img  # noqa: E402,F401
import diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_inpaint  # noqa: E402,F401

diffusers.utils.logging.set_verbosity_error()
diffusers.utils.logging.disable_progress_bar()
transformers.utils.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()
torch.set_num_threads(1)

REPO_ROOT = Path(__file__).resolve().parents[2]
MODELS = REPO_ROOT / "Tests" / "Fixtures" / "models"
OUT_DIR = REPO_ROOT / "Tests" / "Fixtures" / "pipelines"
GENERATOR_NAME = "tools/reference/make_pipeline_fixtures.py"

PROMPT = "a photograph of an astronaut riding a horse"
NEGATIVE = "blurry, low quality"

# Darkroom recipe name -> (diffusers class, non-default kwargs for from_config)
RECIPES = {
    "ddim": (DDIMScheduler, {}),
    "pndm": (PNDMScheduler, {}),
    "lms": (LMSDiscreteScheduler, {}),
    "euler": (EulerDiscreteScheduler, {}),
    "euler_a": (EulerAncestralDiscreteScheduler, {}),
    "dpmpp_2m": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "euler_karras": (EulerDiscreteScheduler, {"use_karras_sigmas": True}),
    "lms_karras": (LMSDiscreteScheduler, {"use_karras_sigmas": True}),
    "dpmpp_2m_karras": (DPMSolverMultistepScheduler,
                        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True}),
    # issue 12
    "dpmpp_2m_sde": (DPMSolverMultistepScheduler, {"algorithm_type": "sde-dpmsolver++", "solver_order": 2}),
    "dpmpp_2m_sde_karras": (DPMSolverMultistepScheduler,
                            {"algorithm_type": "sde-dpmsolver++", "solver_order": 2, "use_karras_sigmas": True}),
    "unipc": (UniPCMultistepScheduler, {}),
    "heun": (HeunDiscreteScheduler, {}),
    "dpm2": (KDPM2DiscreteScheduler, {}),
    "dpm2_karras": (KDPM2DiscreteScheduler, {"use_karras_sigmas": True}),
    "dpm2_a": (KDPM2AncestralDiscreteScheduler, {}),
    "dpm2_a_karras": (KDPM2AncestralDiscreteScheduler, {"use_karras_sigmas": True}),
    "lcm": (LCMScheduler, {}),
}
NEW_SAMPLERS = ["dpmpp_2m_sde", "dpmpp_2m_sde_karras", "unipc", "heun", "dpm2", "dpm2_karras", "dpm2_a",
                "dpm2_a_karras", "lcm"]

# tokenizers: only sd1 ships one; SD2's is the same vocab/merges with pad "!" (id 0)
TOKENIZER = {"sd1": ("sd1", None), "sd1_inpaint": ("sd1", None), "sd2v": ("sd1", "!")}


# --------------------------------------------------------------------------
# cases
# --------------------------------------------------------------------------

def case(name, pipeline, model, recipe, *, steps=10, strength=0.6, guidance=7.5, seed=1234,
         prompt=PROMPT, negative="", image="photo.png", mask=None, eta=0.0,
         padding_mask_crop=None, note=None, timestep_spacing=None):
    c = dict(name=name, pipeline=pipeline, model=model, recipe=recipe, prompt=prompt,
             negative_prompt=negative, steps=steps, strength=strength, guidance=guidance,
             seed=seed, image=image, mask=mask, eta=eta, padding_mask_crop=padding_mask_crop)
    if timestep_spacing:
        c["timestep_spacing"] = timestep_spacing
    if note:
        c["note"] = note
    return c


def all_cases() -> list[dict]:
    cs = []
    for r in ["ddim", "pndm", "lms", "euler", "euler_a", "dpmpp_2m", "dpmpp_2m_karras", "euler_karras", "lms_karras"]:
        cs.append(case(f"i2i_sd1_{r}", "img2img", "sd1", r))
    # A second strength for every sampler (dpmpp_2m has its own below).
    for r in ["ddim", "pndm", "lms", "euler", "euler_a", "dpmpp_2m_karras", "euler_karras", "lms_karras"]:
        cs.append(case(f"i2i_sd1_{r}_s030", "img2img", "sd1", r, strength=0.3))
    cs += [
        case("i2i_sd1_euler_s100", "img2img", "sd1", "euler", strength=1.0),
        case("i2i_sd1_ddim_s100", "img2img", "sd1", "ddim", strength=1.0),
        case("i2i_sd1_dpmpp_2m_s030", "img2img", "sd1", "dpmpp_2m", strength=0.3),
        case("i2i_sd1_euler_cfg1", "img2img", "sd1", "euler", guidance=1.0,
             note="guidance <= 1: diffusers skips CFG (batch of 1, cond only, negative prompt unused)"),
        case("i2i_sd1_euler_neg", "img2img", "sd1", "euler", negative=NEGATIVE,
             note="the negative prompt's tokens have all-zero embedding rows in the tiny text encoder"),
        case("i2i_sd1_euler_ns", "img2img", "sd1", "euler", image="photo_ns.png"),
        case("i2i_sd1_euler_seed1235", "img2img", "sd1", "euler", seed=1235,
             note="with i2i_sd1_euler (seed 1234): Darkroom count=2 -> seeds seed, seed+1, one call each"),
        case("i2i_sd1_ddim_eta1", "img2img", "sd1", "ddim", eta=1.0),
        case("i2i_sd2v_euler", "img2img", "sd2v", "euler"),
        case("i2i_sd2v_ddim", "img2img", "sd2v", "ddim"),
        case("inp9_euler_s100", "inpaint", "sd1_inpaint", "euler", strength=1.0, mask="mask.png"),
        case("inp9_euler_s075", "inpaint", "sd1_inpaint", "euler", strength=0.75, mask="mask.png"),
        case("inp9_pndm_s100", "inpaint", "sd1_inpaint", "pndm", strength=1.0, mask="mask.png"),
        case("inp9_pndm_s075", "inpaint", "sd1_inpaint", "pndm", strength=0.75, mask="mask.png"),
        case("inp9_euler_s075_ns", "inpaint", "sd1_inpaint", "euler", strength=0.75,
             image="photo_ns.png", mask="mask_ns.png"),
        case("inp4_euler_s075", "inpaint", "sd1", "euler", strength=0.75, mask="mask.png"),
        case("inp4_euler_s100", "inpaint", "sd1", "euler", strength=1.0, mask="mask.png"),
        case("inp9_euler_s075_crop8", "inpaint", "sd1_inpaint", "euler", strength=0.75, mask="mask.png",
             padding_mask_crop=8,
             note="padding_mask_crop requires PIL in and output_type='pil': `image` is the pasted-back, "
                  "quantised PIL output / 255; `image_crop` is the float output for the crop"),
    ]
    names = [c["name"] for c in cs]
    assert len(names) == len(set(names))
    return cs


def sampler_cases() -> list[dict]:
    """Issue 12's samplers, written to samplers/ (only `image` and `latents_final` are stored, to keep it small)."""
    cs = []
    for r in NEW_SAMPLERS:
        cs.append(case(f"i2i_sd1_{r}", "img2img", "sd1", r))
        cs.append(case(f"i2i_sd1_{r}_s030", "img2img", "sd1", r, strength=0.3))
    cs += [
        case("i2i_sd1_lcm_4steps_cfg1", "img2img", "sd1", "lcm", steps=4, guidance=1.0,
             note="LCM-LoRA style: 4 steps x 0.6 = 2 steps, no CFG; the tiny model is no LCM, the arithmetic is the same"),
        case("i2i_sd1_euler_a_trailing_1step", "img2img", "sd1", "euler_a", steps=1, strength=1.0, guidance=1.0,
             timestep_spacing="trailing", note="SD-Turbo style: trailing spacing, 1 step from t = 999"),
        case("i2i_sd1_euler_a_trailing_4steps", "img2img", "sd1", "euler_a", steps=4, strength=0.5, guidance=1.0,
             timestep_spacing="trailing", note="SD-Turbo style: trailing spacing, 4 steps x 0.5"),
        case("inp4_heun_s075", "inpaint", "sd1", "heun", strength=0.75, mask="mask.png",
             note="order 2 with the 4-channel blend: add_noise at timesteps[i + 1] with the live step index"),
        case("inp9_dpm2_a_s075", "inpaint", "sd1_inpaint", "dpm2_a", strength=0.75, mask="mask.png"),
    ]
    names = [c["name"] for c in cs]
    assert len(names) == len(set(names))
    return cs


# --------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------

def make_inputs(folder: Path) -> None:
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(data.astronaut()).convert("RGB").resize((64, 64), Image.LANCZOS).save(folder / "photo.png")
    Image.fromarray(data.coffee()).convert("RGB").resize((64, 48), Image.LANCZOS).save(folder / "photo_ns.png")
    m = np.zeros((64, 64), np.uint8)
    m[20:52, 16:48] = 255                       # x 16..47, y 20..51
    Image.fromarray(m, "L").save(folder / "mask.png")
    # 64 wide x 48 high: ellipse centred at (40, 22), radii 14 (x) and 11 (y), on pixel centres
    ys, xs = np.mgrid[0:48, 0:64].astype(np.float64) + 0.5
    inside = ((xs - 40.0) / 14.0) ** 2 + ((ys - 22.0) / 11.0) ** 2 <= 1.0
    Image.fromarray(np.where(inside, 255, 0).astype(np.uint8), "L").save(folder / "mask_ns.png")


# --------------------------------------------------------------------------
# generator draw trace (hooks diffusers' randn_tensor; does not change any value)
# --------------------------------------------------------------------------

_ORIG_RANDN = _torch_utils.randn_tensor
_TRACE: list[dict] | None = None


def _traced_randn(shape, *args, **kwargs):
    if _TRACE is not None and kwargs.get("generator") is not None:
        f = sys._getframe(1)
        chain = []
        while f is not None and len(chain) < 4:
            q = f.f_code.co_qualname
            if q.startswith("run_case"):     # this script's own taps
                f = f.f_back
                continue
            chain.append(q)
            if q.endswith("__call__"):
                break
            f = f.f_back
        _TRACE.append({"by": " < ".join(chain), "what": describe_draw(chain), "shape": list(shape)})
    return _ORIG_RANDN(shape, *args, **kwargs)


def describe_draw(chain: list[str]) -> str:
    if chain[0] == "DiagonalGaussianDistribution.sample":
        if any(q.endswith("prepare_mask_latents") for q in chain):
            return "posterior sample of the masked image: mean + std * randn (vae.encode(init_image * (mask < 0.5)))"
        return "posterior sample of the init image: mean + std * randn (vae.encode(image))"
    if chain[0].endswith("prepare_latents"):
        return "noise for the start latents (prepare_latents)"
    if chain[0].endswith(".step"):
        return "scheduler step noise (" + chain[0].split(".")[0] + ")"
    return "other"


def hook_randn() -> None:
    for name, mod in list(sys.modules.items()):
        if name.startswith("diffusers") and getattr(mod, "randn_tensor", None) is _ORIG_RANDN:
            setattr(mod, "randn_tensor", _traced_randn)


def compress_trace(tr: list[dict]) -> list[dict]:
    out: list[dict] = []
    for d in tr:
        if out and out[-1]["by"] == d["by"] and out[-1]["shape"] == d["shape"]:
            out[-1]["count"] += 1
        else:
            out.append(dict(d, count=1))
    return out


# --------------------------------------------------------------------------
# pipelines
# --------------------------------------------------------------------------

def canonicalize_header(path: Path) -> None:
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    canon = json.dumps(header, separators=(",", ":"), sort_keys=True, ensure_ascii=True).encode("utf-8")
    if len(canon) > n:
        raise RuntimeError(f"canonical header longer than original: {path}")
    path.write_bytes(raw[:8] + canon + b" " * (n - len(canon)) + raw[8 + n:])


def write_safetensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    ordered = {k: tensors[k].detach().to(torch.float32).contiguous().clone() for k in sorted(tensors)}
    save_file(ordered, str(path), metadata=metadata)
    canonicalize_header(path)
    path.chmod(0o644)


_PIPES: dict = {}


def get_pipe(kind: str, model: str):
    key = (kind, model)
    if key not in _PIPES:
        tok_folder, pad = TOKENIZER[model]
        tok_kwargs = {"pad_token": pad} if pad else {}
        tok = CLIPTokenizer.from_pretrained(str(MODELS / tok_folder / "diffusers" / "tokenizer"), **tok_kwargs)
        cls = StableDiffusionImg2ImgPipeline if kind == "img2img" else StableDiffusionInpaintPipeline
        variant = "fp16" if model == "sd2v" else None
        pipe = cls.from_pretrained(str(MODELS / model / "diffusers"), tokenizer=tok, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False,
                                   dtype=torch.float32, variant=variant, local_files_only=True)
        pipe.set_progress_bar_config(disable=True)
        _PIPES[key] = (pipe, copy.deepcopy(dict(pipe.scheduler.config)))
    return _PIPES[key]


def jsonable(v):
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, dict):
        return {k: jsonable(x) for k, x in v.items()}
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v


@torch.no_grad()
def run_case(c: dict, tensors: dict, first: bool) -> dict:
    global _TRACE
    pipe, folder_cfg = get_pipe(c["pipeline"], c["model"])
    cls, kwargs = RECIPES[c["recipe"]]
    kwargs = dict(kwargs)
    if c.get("timestep_spacing"):
        kwargs["timestep_spacing"] = c["timestep_spacing"]
    pipe.scheduler = cls.from_config(folder_cfg, **kwargs)
    sf = pipe.vae.config.scaling_factor
    name = c["name"]

    cap: dict = {"steps": []}

    # prepare_latents / prepare_mask_latents / add_noise / vae.decode / postprocess taps
    orig_prepare = type(pipe).prepare_latents.__get__(pipe)
    orig_add_noise = pipe.scheduler.add_noise
    orig_decode = type(pipe.vae).decode.__get__(pipe.vae)
    orig_post = type(pipe.image_processor).postprocess.__get__(pipe.image_processor)
    in_prepare = [False]

    def add_noise(original, noise, timesteps):
        if in_prepare[0] and "init_latents" not in cap:
            cap["init_latents"] = original.clone()
            cap["noise"] = noise.clone()
            cap["add_noise_t"] = timesteps.tolist()
        return orig_add_noise(original, noise, timesteps)

    def prepare_latents(*a, **k):
        in_prepare[0] = True
        out = orig_prepare(*a, **k)
        in_prepare[0] = False
        if isinstance(out, tuple):       # inpaint: (latents, noise[, image_latents])
            cap["latents_start"] = out[0].clone()
            cap["noise"] = out[1].clone()
            if len(out) > 2:
                cap["init_latents"] = out[2].clone()
        else:
            cap["latents_start"] = out.clone()
        return out

    if c["pipeline"] == "inpaint":
        orig_pml = type(pipe).prepare_mask_latents.__get__(pipe)

        def prepare_mask_latents(*a, **k):
            mask, mil = orig_pml(*a, **k)
            cap["mask_latent"] = mask[:1].clone()
            cap["masked_image_latents"] = mil[:1].clone()
            return mask, mil

        pipe.prepare_mask_latents = prepare_mask_latents

    def decode(z, *a, **k):
        cap["decode_in"] = z.clone()
        return orig_decode(z, *a, **k)

    def postprocess(image, output_type="pil", do_denormalize=None):
        cap["image_np"] = orig_post(image, output_type="np", do_denormalize=do_denormalize)
        return orig_post(image, output_type=output_type, do_denormalize=do_denormalize)

    def on_step_end(p, i, t, kw):
        cap["steps"].append(float(t))
        cap["latents_final"] = kw["latents"].clone()
        if i == 0:
            cap["prompt_embeds"] = kw["prompt_embeds"].clone()
        return {}

    pipe.prepare_latents = prepare_latents
    pipe.scheduler.add_noise = add_noise
    pipe.vae.decode = decode
    pipe.image_processor.postprocess = postprocess

    image = Image.open(OUT_DIR / "inputs" / c["image"]).convert("RGB")
    args = dict(prompt=c["prompt"], negative_prompt=c["negative_prompt"], image=image,
                num_inference_steps=c["steps"], strength=c["strength"], guidance_scale=c["guidance"],
                eta=c["eta"], generator=torch.Generator("cpu").manual_seed(c["seed"]),
                output_type="np", callback_on_step_end=on_step_end,
                callback_on_step_end_tensor_inputs=["latents", "prompt_embeds"])
    if c["pipeline"] == "inpaint":
        args["mask_image"] = Image.open(OUT_DIR / "inputs" / c["mask"]).convert("L")
        args["height"], args["width"] = image.height, image.width
        if c["padding_mask_crop"] is not None:
            args["padding_mask_crop"] = c["padding_mask_crop"]
            args["output_type"] = "pil"
            cap["crops_coords"] = list(pipe.mask_processor.get_crop_region(
                args["mask_image"], image.width, image.height, pad=c["padding_mask_crop"]))

    sched_used = pipe.scheduler
    hook_randn()
    _TRACE = []
    try:
        out = pipe(**args).images
    finally:
        trace, _TRACE = _TRACE, None
        for attr in ("prepare_latents", "prepare_mask_latents"):
            pipe.__dict__.pop(attr, None)
        pipe.vae.__dict__.pop("decode", None)
        pipe.image_processor.__dict__.pop("postprocess", None)

    assert torch.equal(cap["latents_final"] / sf, cap["decode_in"]), name

    # Independent checks: the same call with no taps, no callback and a fresh
    # scheduler and generator gives the same image, and output_type="latent"
    # gives latents_final.
    def plain(output_type):
        pipe.scheduler = cls.from_config(folder_cfg, **kwargs)
        a = {k: v for k, v in args.items() if not k.startswith("callback_on_step_end")}
        a["generator"] = torch.Generator("cpu").manual_seed(c["seed"])
        a["output_type"] = output_type
        return pipe(**a).images

    ref = plain(args["output_type"])
    if args["output_type"] == "np":
        assert np.array_equal(ref, out), name
        assert torch.equal(plain("latent"), cap["latents_final"]), name
    else:
        assert np.array_equal(np.asarray(ref[0]), np.asarray(out[0])), name
    pipe.scheduler = sched_used
    if args["output_type"] == "np":
        img = torch.from_numpy(np.asarray(out[0]).copy())
        assert torch.equal(img, torch.from_numpy(cap["image_np"][0])), name
    else:
        img = torch.from_numpy(np.asarray(out[0], dtype=np.float32) / 255.0)
        tensors[f"{name}.image_crop"] = torch.from_numpy(cap["image_np"][0].copy())
    H, W = image.height, image.width
    assert tuple(img.shape) == (H, W, 3), (name, img.shape)

    tensors[f"{name}.image"] = img
    tensors[f"{name}.latents_start"] = cap["latents_start"]
    tensors[f"{name}.latents_final"] = cap["latents_final"]
    tensors[f"{name}.noise"] = cap["noise"]
    if "init_latents" in cap:
        tensors[f"{name}.init_latents"] = cap["init_latents"]
    if c["pipeline"] == "inpaint":
        tensors[f"{name}.mask_latent"] = cap["mask_latent"]
        tensors[f"{name}.masked_image_latents"] = cap["masked_image_latents"]
    if first:
        tensors[f"{name}.prompt_embeds"] = cap["prompt_embeds"]

    sched = pipe.scheduler
    cfg = {k: jsonable(v) for k, v in dict(sched.config).items() if not k.startswith("_")}
    rec = dict(c)
    rec["scheduler"] = {
        "recipe": c["recipe"],
        "class": type(sched).__name__,
        "kwargs": kwargs,
        "from_config": f"Tests/Fixtures/models/{c['model']}/diffusers/scheduler/scheduler_config.json",
        "effective_config": cfg,
        "order": sched.order,
        "init_noise_sigma": float(sched.init_noise_sigma),
        "timesteps_full": [float(t) for t in sched.timesteps],
    }
    if hasattr(sched, "sigmas"):
        rec["scheduler"]["sigmas_full"] = [float(s) for s in sched.sigmas]
    rec["timesteps_run"] = cap["steps"]
    rec["unet_calls"] = len(cap["steps"])
    if "add_noise_t" in cap:
        rec["add_noise_timestep"] = cap["add_noise_t"]
    rec["height"], rec["width"] = H, W
    rec["cfg"] = c["guidance"] > 1.0
    if c["pipeline"] == "inpaint":
        rec["inpaint"] = {
            "unet_in_channels": pipe.unet.config.in_channels,
            "height_width_passed": [H, W],
            "mask_processor": {"do_normalize": False, "do_binarize": True, "do_convert_grayscale": True,
                               "blur": False, "binarize_threshold": ">= 0.5 -> 1"},
            "mask_to_latent": "torch.nn.functional.interpolate(mask, size=(H//8, W//8)) (mode nearest)",
            "masked_image": "init_image * (mask < 0.5)",
            "padding_mask_crop": c["padding_mask_crop"],
        }
        if "crops_coords" in cap:
            rec["inpaint"]["crops_coords_x1y1x2y2"] = cap["crops_coords"]
    rec["generator_draws"] = compress_trace(trace)
    roles = sorted(k.split(".", 1)[1] for k in tensors if k.startswith(name + "."))
    rec["tensors"] = {r: f"{name}.{r}" for r in roles}
    rec["output"] = f"{name}.image"
    rec["output_type"] = args["output_type"]
    print(f"  {name}: {len(cap['steps'])} UNet steps, t={cap['steps'][:1]}..., "
          f"image mean {img.mean().item():.4f}", flush=True)
    return rec


def json_safe(value):
    """Strict JSON: non-finite floats (e.g. DPM-Solver's lambda_min_clipped = -inf) become strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def main() -> None:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for p in OUT_DIR.iterdir():
        # README.md is hand-written; img2img_inpainting_model.safetensors is make_inpainting_img2img_fixture.py's,
        # winograd/ make_winograd_pipeline_fixture.py's.
        if p.name not in ("README.md", "img2img_inpainting_model.safetensors", "winograd"):
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    make_inputs(OUT_DIR / "inputs")

    tensors: dict[str, torch.Tensor] = {}
    records = []
    for i, c in enumerate(all_cases()):
        records.append(run_case(c, tensors, first=(i == 0)))

    doc = {
        "generator": GENERATOR_NAME,
        "versions": {"torch": torch.__version__, "diffusers": diffusers.__version__,
                     "transformers": transformers.__version__},
        "prompt_embeds_order": "[negative (uncond), prompt (cond)] along the batch axis",
        "image_layout": "[H, W, 3] float32 in [0, 1]: (vae.decode(latents / 0.18215) * 0.5 + 0.5).clamp(0, 1), "
                        "permuted to HWC; not quantised",
        "cases": records,
    }
    (OUT_DIR / "cases.json").write_text(json.dumps(json_safe(doc), indent=1, sort_keys=True, allow_nan=False) + "\n")
    write_safetensors(OUT_DIR / "expected.safetensors", tensors,
                      {"generator": GENERATOR_NAME, "cases": "see cases.json"})

    # Issue 12's samplers: their own folder, so the cases above stay byte-identical; image and final latents only.
    sampler_dir = OUT_DIR / "samplers"
    sampler_dir.mkdir(parents=True, exist_ok=True)
    sampler_tensors: dict[str, torch.Tensor] = {}
    sampler_records = []
    for c in sampler_cases():
        full: dict[str, torch.Tensor] = {}
        rec = run_case(c, full, first=False)
        kept = {k: v for k, v in full.items() if k.split(".", 1)[1] in ("image", "latents_final")}
        rec["tensors"] = {k.split(".", 1)[1]: k for k in sorted(kept)}
        sampler_tensors.update(kept)
        sampler_records.append(rec)
    sampler_doc = dict(doc, cases=sampler_records,
                       note="issue 12's samplers; only image and latents_final are stored (inputs: ../inputs)")
    (sampler_dir / "cases.json").write_text(json.dumps(json_safe(sampler_doc), indent=1, sort_keys=True, allow_nan=False) + "\n")
    write_safetensors(sampler_dir / "expected.safetensors", sampler_tensors,
                      {"generator": GENERATOR_NAME, "cases": "see cases.json"})
    total = sum(p.stat().st_size for p in OUT_DIR.rglob("*") if p.is_file())
    print(f"wrote {len(records)} cases, {len(tensors)} tensors, {total} bytes", flush=True)


if __name__ == "__main__":
    main()
