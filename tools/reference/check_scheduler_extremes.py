#!/usr/bin/env python3
"""Which sampler x steps x strength combinations diffusers 0.42.1 cannot run (no fixture file).

For the sd1 fixture's scheduler config ("leading", steps_offset 1) and SD 1.x's built-in config (no
timestep_spacing: class defaults), every recipe sampler at 1, 2, 999 and 1000 steps x strength 0.0015 and 1
runs diffusers' img2img loop (get_timesteps, set_begin_index, add_noise, step) on a 1x1x2x2 sample with the
model output 0.1 * scale_model_input(x). Prints config:sampler:steps:strength:outcome for every combination
that raises (IndexError) or ends in NaN/inf. Tests/DarkroomSchedulersTests/ExtremeSettingsTests.swift holds
the printed list: Darkroom must refuse exactly these (and never trap).

    ~/venv/bin/python tools/reference/check_scheduler_extremes.py
"""
import json, torch, warnings
warnings.filterwarnings("ignore")
import os
from diffusers import DDIMScheduler, PNDMScheduler, LMSDiscreteScheduler, EulerDiscreteScheduler, EulerAncestralDiscreteScheduler, DPMSolverMultistepScheduler
from diffusers import UniPCMultistepScheduler, HeunDiscreteScheduler, KDPM2DiscreteScheduler, KDPM2AncestralDiscreteScheduler, LCMScheduler
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
fixture = json.load(open(os.path.join(ROOT, "Tests/Fixtures/models/sd1/diffusers/scheduler/scheduler_config.json")))
builtin = {"beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085, "num_train_timesteps": 1000, "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1, "trained_betas": None, "clip_sample": False}
names = {"ddim": (DDIMScheduler, {}), "pndm": (PNDMScheduler, {}), "lms": (LMSDiscreteScheduler, {}), "lms_karras": (LMSDiscreteScheduler, {"use_karras_sigmas": True}),
 "euler": (EulerDiscreteScheduler, {}), "euler_karras": (EulerDiscreteScheduler, {"use_karras_sigmas": True}), "euler_a": (EulerAncestralDiscreteScheduler, {}),
 "dpmpp_2m": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2}), "dpmpp_2m_karras": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True}),
 "dpmpp_2m_sde": (DPMSolverMultistepScheduler, {"algorithm_type": "sde-dpmsolver++", "solver_order": 2}), "dpmpp_2m_sde_karras": (DPMSolverMultistepScheduler, {"algorithm_type": "sde-dpmsolver++", "solver_order": 2, "use_karras_sigmas": True}),
 "unipc": (UniPCMultistepScheduler, {}), "heun": (HeunDiscreteScheduler, {}), "dpm2": (KDPM2DiscreteScheduler, {}), "dpm2_karras": (KDPM2DiscreteScheduler, {"use_karras_sigmas": True}),
 "dpm2_a": (KDPM2AncestralDiscreteScheduler, {}), "dpm2_a_karras": (KDPM2AncestralDiscreteScheduler, {"use_karras_sigmas": True}), "lcm": (LCMScheduler, {})}
import inspect
fails = []
for cname, c in [("fixture", fixture), ("builtin", builtin)]:
  for name, (cls, kw) in names.items():
    for steps in [1, 2, 999, 1000]:
      for strength in [0.0015, 1.0]:
        try:
            s = cls.from_config(c, **kw); s.set_timesteps(steps)
            init = min(int(steps * strength), steps); t_start = max(steps - init, 0)
            ts = s.timesteps[t_start * s.order:]
            if len(ts) == 0: continue
            if hasattr(s, "set_begin_index"): s.set_begin_index(t_start * s.order)
            g = torch.Generator().manual_seed(0)
            x0 = torch.randn(1, 1, 2, 2, generator=g)
            x = s.add_noise(x0, torch.randn(1,1,2,2, generator=g), ts[:1])
            for t in ts:
                xi = s.scale_model_input(x, t)
                x = (s.step(0.1 * xi, t, x, generator=g) if "generator" in inspect.signature(s.step).parameters else s.step(0.1 * xi, t, x)).prev_sample
            if not torch.isfinite(x).all(): fails.append(f"{cname}:{name}:{steps}:{strength}:nan")
        except Exception as e:
            fails.append(f"{cname}:{name}:{steps}:{strength}:{type(e).__name__}")
print("\n".join(fails))
