#!/usr/bin/env python3
"""Writes Tests/Fixtures/schedulers/schedulers.json: diffusers 0.42.1 reference runs of Darkroom's samplers.

Run from the package (or repo) root:  HF_HUB_OFFLINE=1 ~/venv/bin/python tools/reference/make_scheduler_fixtures.py

Contents (float tensors are little-endian float32, base64; shapes are [1, 4, 8, 8] unless noted):
  configs        scheduler_config.json texts the cases use ("sd15": SD 1.5, "sd21v": SD 2.1-v, ...)
  x0, noise      the img2img "image latent" (diffusers' deterministic dummy sample) and the start noise
  step_noise     50 seeded standard-normal tensors, consumed in order by ancestral / eta>0 steps
  alphas_cumprod per config, diffusers' float32 alphas_cumprod (1000 values)
  loops          one full denoising loop per recipe x config x steps x strength (diffusers' img2img
                 pipeline semantics: get_timesteps + set_begin_index + add_noise), with the dummy model
                 model(x, t) = x * 0.1 + float32(t) * 1e-3 applied to scale_model_input(x, t)
  schedules      timesteps / sigmas / init_noise_sigma for every recipe x spacing x step count
  lms            diffusers' LMS coefficients (scipy.integrate.quad) for whole schedules, with the float32
                 sigmas they were integrated over
Deterministic: rerunning gives a byte-identical file.

Verification mode:  --correctly-rounded OUT.json  writes the same fixture to OUT.json with torch's
float32 `** 0.5`, `torch.log` and `torch.exp` replaced by correctly rounded ones (computed in float64,
rounded to float32). torch's own float32 sqrt/log/exp on x86 CPUs (MKL VML) are off by 1 ulp for a
sizeable fraction of inputs; with them replaced, the Swift schedulers reproduce diffusers bit for bit
(except Euler/LMS Karras, whose fractional timesteps go through NumPy's SIMD float32 log). Not
committed; run the Swift tests against it with DARKROOM_SCHEDULER_FIXTURES=OUT.json.
"""
import base64
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
import diffusers
from diffusers import (
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
)
import diffusers.schedulers.scheduling_dpmsolver_multistep as dpm_module
import diffusers.schedulers.scheduling_euler_ancestral_discrete as euler_a_module
import diffusers.schedulers.scheduling_k_dpm_2_ancestral_discrete as dpm2_a_module
import diffusers.schedulers.scheduling_lcm as lcm_module

# Modules whose step draws noise with randn_tensor; the loops feed them STEP_NOISE in draw order.
NOISE_MODULES = (euler_a_module, dpm_module, dpm2_a_module, lcm_module)

assert diffusers.__version__ == "0.42.1", diffusers.__version__

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.basename(os.path.dirname(os.path.abspath(__file__))) == "reference":  # tools/reference/
    ROOT = os.path.dirname(ROOT)
OUT = os.path.join(ROOT, "Tests", "Fixtures", "schedulers", "schedulers.json")

SHAPE = (1, 4, 8, 8)

# Scheduler configs as shipped with the checkpoints (keys as in the hub files).
CONFIGS = {
    # runwayml/stable-diffusion-v1-5 scheduler/scheduler_config.json
    "sd15": {
        "_class_name": "PNDMScheduler",
        "_diffusers_version": "0.6.0",
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "beta_start": 0.00085,
        "num_train_timesteps": 1000,
        "set_alpha_to_one": False,
        "skip_prk_steps": True,
        "steps_offset": 1,
        "trained_betas": None,
        "clip_sample": False,
    },
    # stabilityai/stable-diffusion-2-1 scheduler/scheduler_config.json (768, v-prediction)
    "sd21v": {
        "_class_name": "DDIMScheduler",
        "_diffusers_version": "0.8.0",
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "beta_start": 0.00085,
        "clip_sample": False,
        "num_train_timesteps": 1000,
        "prediction_type": "v_prediction",
        "set_alpha_to_one": False,
        "skip_prk_steps": True,
        "steps_offset": 1,
        "trained_betas": None,
    },
    # SD 1.5 with x0 ("sample") prediction, for the schedulers that support it.
    "sd15_sample": {
        "_class_name": "PNDMScheduler",
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "beta_start": 0.00085,
        "num_train_timesteps": 1000,
        "set_alpha_to_one": False,
        "skip_prk_steps": True,
        "steps_offset": 1,
        "clip_sample": False,
        "prediction_type": "sample",
    },
    # Other beta schedules (alphas_cumprod only).
    "linear_default": {},
    "cosine": {"beta_schedule": "squaredcos_cap_v2"},
}

# recipe -> (class, from_config overrides, step kwargs)
RECIPES = {
    "ddim": (DDIMScheduler, {}, {}),
    "pndm": (PNDMScheduler, {}, {}),
    "lms": (LMSDiscreteScheduler, {"use_karras_sigmas": False}, {}),
    "lms_karras": (LMSDiscreteScheduler, {"use_karras_sigmas": True}, {}),
    "euler": (EulerDiscreteScheduler, {"use_karras_sigmas": False}, {}),
    "euler_karras": (EulerDiscreteScheduler, {"use_karras_sigmas": True}, {}),
    "euler_a": (EulerAncestralDiscreteScheduler, {}, {}),
    "dpmpp_2m": (DPMSolverMultistepScheduler,
                 {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": False}, {}),
    "dpmpp_2m_karras": (DPMSolverMultistepScheduler,
                        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True}, {}),
}
# Issue 12's samplers (loops at 4, 10 and 25 steps; see main()).
NEW_RECIPES = {
    "dpmpp_2m_sde": (DPMSolverMultistepScheduler,
                     {"algorithm_type": "sde-dpmsolver++", "solver_order": 2, "use_karras_sigmas": False}, {}),
    "dpmpp_2m_sde_karras": (DPMSolverMultistepScheduler,
                            {"algorithm_type": "sde-dpmsolver++", "solver_order": 2, "use_karras_sigmas": True}, {}),
    "unipc": (UniPCMultistepScheduler, {"use_karras_sigmas": False}, {}),
    "heun": (HeunDiscreteScheduler, {"use_karras_sigmas": False}, {}),
    "dpm2": (KDPM2DiscreteScheduler, {"use_karras_sigmas": False}, {}),
    "dpm2_karras": (KDPM2DiscreteScheduler, {"use_karras_sigmas": True}, {}),
    "dpm2_a": (KDPM2AncestralDiscreteScheduler, {"use_karras_sigmas": False}, {}),
    "dpm2_a_karras": (KDPM2AncestralDiscreteScheduler, {"use_karras_sigmas": True}, {}),
    "lcm": (LCMScheduler, {}, {}),
}
RECIPES.update(NEW_RECIPES)


def b64(t):
    a = np.ascontiguousarray(torch.as_tensor(t).detach().to(torch.float32).numpy().astype("<f4"))
    return base64.b64encode(a.tobytes()).decode("ascii")


def floats(values):
    """Exact float32 values as JSON numbers (float32 -> float64 -> shortest repr round-trips)."""
    return [float(np.float32(v)) for v in np.asarray(values, dtype=np.float64).reshape(-1)]


def make(recipe, config_name, extra=None):
    cls, overrides, _ = RECIPES[recipe]
    kwargs = dict(overrides)
    kwargs.update(extra or {})
    return cls.from_config(CONFIGS[config_name], **kwargs)


def dummy_model(x, t):
    t32 = torch.as_tensor(t).to(torch.float32)
    return x * 0.1 + t32 * 1e-3


# Deterministic inputs (diffusers' dummy_sample_deter pattern, and seeded normals).
N = int(np.prod(SHAPE))
X0 = (torch.arange(N, dtype=torch.float32).flip(-1) / N).reshape(SHAPE[1], SHAPE[2], SHAPE[3], SHAPE[0])
X0 = X0.permute(3, 0, 1, 2).contiguous() * 2.0 - 1.0
gen = torch.Generator().manual_seed(0)
NOISE = torch.randn(SHAPE, generator=gen, dtype=torch.float32)
STEP_NOISE = [torch.randn(SHAPE, generator=gen, dtype=torch.float32) for _ in range(50)]


class NoiseFeed:
    def __init__(self):
        self.i = 0

    def next(self):
        t = STEP_NOISE[self.i].clone()
        self.i += 1
        return t


def run_loop(recipe, config_name, steps, strength, eta=0.0, spacing=None):
    sched = make(recipe, config_name, {"timestep_spacing": spacing} if spacing else None)
    sched.set_timesteps(steps)
    full = sched.timesteps.clone()
    # StableDiffusionImg2ImgPipeline.get_timesteps
    init_timestep = min(int(steps * strength), steps)
    t_start = max(steps - init_timestep, 0)
    timesteps = sched.timesteps[t_start * sched.order:]
    if hasattr(sched, "set_begin_index"):
        sched.set_begin_index(t_start * sched.order)
    record = {"recipe": recipe, "config": config_name, "steps": steps, "strength": strength,
              "begin_index": t_start * sched.order, "timesteps": floats(full.numpy())}
    if strength >= 1.0:
        latents = NOISE * sched.init_noise_sigma
    else:
        latents = sched.add_noise(X0, NOISE, timesteps[:1].repeat(1))
        record["noised"] = b64(latents)
    record["init_noise_sigma"] = float(np.float32(float(sched.init_noise_sigma)))
    if spacing:
        record["spacing"] = spacing
    feed = NoiseFeed()
    originals = [m.randn_tensor for m in NOISE_MODULES]
    for m in NOISE_MODULES:
        m.randn_tensor = lambda *a, **k: feed.next()
    try:
        for t in timesteps:
            inp = sched.scale_model_input(latents, t)
            out = dummy_model(inp, t)
            if recipe == "ddim":
                kwargs = {"eta": eta}
                if eta > 0:
                    kwargs["variance_noise"] = feed.next()
                latents = sched.step(out, t, latents, **kwargs).prev_sample
            else:
                latents = sched.step(out, t, latents).prev_sample
    finally:
        for m, original in zip(NOISE_MODULES, originals):
            m.randn_tensor = original
    record["noise_draws"] = feed.i
    record["eta"] = eta
    record["final"] = b64(latents)
    return record


def schedule(recipe, config_name, spacing, steps):
    sched = make(recipe, config_name, {"timestep_spacing": spacing})
    sched.set_timesteps(steps)
    rec = {"recipe": recipe, "config": config_name, "spacing": spacing, "steps": steps,
           "timesteps": floats(sched.timesteps.numpy()),
           "init_noise_sigma": float(np.float32(float(sched.init_noise_sigma)))}
    if hasattr(sched, "sigmas") and recipe not in ("ddim", "pndm"):
        rec["sigmas"] = floats(sched.sigmas.numpy())
    return rec


def lms_coefficients(recipe, config_name, steps):
    sched = make(recipe, config_name)
    sched.set_timesteps(steps)
    rows = []
    for i in range(len(sched.timesteps)):
        order = min(i + 1, 4)
        rows.append([float(sched.get_lms_coefficient(order, i, k)) for k in range(order)])
    return {"recipe": recipe, "config": config_name, "steps": steps, "coefficients": rows,
            "sigmas": floats(sched.sigmas.numpy())}


def use_correctly_rounded_torch_math():
    pow_ = torch.Tensor.__pow__

    def correctly_rounded_pow(self, exponent):
        if isinstance(exponent, float) and exponent == 0.5 and self.dtype == torch.float32:
            return pow_(self.to(torch.float64), 0.5).to(torch.float32)
        return pow_(self, exponent)

    torch.Tensor.__pow__ = correctly_rounded_pow
    for name in ("log", "exp"):
        function = getattr(torch, name)

        def correctly_rounded(x, _function=function):
            if isinstance(x, torch.Tensor) and x.dtype == torch.float32:
                return _function(x.to(torch.float64)).to(torch.float32)
            return _function(x)

        setattr(torch, name, correctly_rounded)


def main():
    global OUT
    correctly_rounded = False
    if len(sys.argv) == 3 and sys.argv[1] == "--correctly-rounded":
        OUT = os.path.abspath(sys.argv[2])
        correctly_rounded = True
        use_correctly_rounded_torch_math()
    elif len(sys.argv) != 1:
        sys.exit("usage: make_scheduler_fixtures.py [--correctly-rounded OUT.json]")
    out = {
        "correctly_rounded": correctly_rounded,
        "generator": "tools/reference/make_scheduler_fixtures.py",
        "versions": {"diffusers": diffusers.__version__, "torch": torch.__version__.split("+")[0],
                     "numpy": np.__version__},
        "shape": list(SHAPE),
        "configs": {k: json.dumps(v, sort_keys=True) for k, v in CONFIGS.items()},
        "x0": b64(X0),
        "noise": b64(NOISE),
        "step_noise": [b64(t) for t in STEP_NOISE],
        "alphas_cumprod": {k: b64(DDIMScheduler.from_config(CONFIGS[k]).alphas_cumprod)
                           for k in ("sd15", "linear_default", "cosine")},
    }
    loops = []
    for recipe in RECIPES:
        if recipe in NEW_RECIPES:
            continue
        for config_name in ("sd15", "sd21v"):
            for steps in (10, 25, 50):
                for strength in (1.0, 0.6, 0.3):
                    loops.append(run_loop(recipe, config_name, steps, strength))
        if recipe == "ddim":
            for config_name in ("sd15", "sd21v"):
                for steps in (10, 25):
                    for strength in (1.0, 0.6):
                        loops.append(run_loop(recipe, config_name, steps, strength, eta=0.5))
        if recipe not in ("pndm", "euler_a"):  # no "sample" prediction in diffusers
            for strength in (1.0, 0.6):
                loops.append(run_loop(recipe, "sd15_sample", 10, strength))
    # Issue 12: the new samplers (sd15 at 4/10/25 steps x 3 strengths, sd21v at 10/25 x 2, "sample"
    # prediction where diffusers has it), every sampler with "trailing" spacing at few steps (SD-Turbo style;
    # lcm has no spacing), and euler_a trailing at 1, 2 and 4 steps.
    for recipe in NEW_RECIPES:
        for steps in (4, 10, 25):
            for strength in (1.0, 0.6, 0.3):
                loops.append(run_loop(recipe, "sd15", steps, strength))
        for steps in (10, 25):
            for strength in (1.0, 0.6):
                loops.append(run_loop(recipe, "sd21v", steps, strength))
        if not recipe.startswith("dpm2"):   # KDPM2(A): NotImplementedError for "sample"
            for strength in (1.0, 0.6):
                loops.append(run_loop(recipe, "sd15_sample", 10, strength))
        if recipe != "lcm":
            for strength in (1.0, 0.5):
                loops.append(run_loop(recipe, "sd15", 4, strength, spacing="trailing"))
    for steps in (1, 2, 4):
        for strength in (1.0, 0.5):
            if int(steps * strength) >= 1:
                loops.append(run_loop("euler_a", "sd15", steps, strength, spacing="trailing"))
    out["loops"] = loops
    schedules = []
    for recipe in RECIPES:
        for spacing in ("linspace", "leading", "trailing"):
            for steps in (1, 3, 7, 30, 100):
                if recipe == "lcm" and (steps > 50 or spacing != "leading"):
                    continue   # LCM: at most original_inference_steps (50); timestep_spacing is not read
                schedules.append(schedule(recipe, "sd15", spacing, steps))
    out["schedules"] = schedules
    out["lms"] = [lms_coefficients(r, "sd15", s) for r in ("lms", "lms_karras") for s in (10, 25)]
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(out, f, sort_keys=True, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {OUT}: {os.path.getsize(OUT)} bytes, {len(loops)} loops, {len(schedules)} schedules")


if __name__ == "__main__":
    sys.exit(main())
