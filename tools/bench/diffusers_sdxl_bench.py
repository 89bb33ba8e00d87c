"""SDXL stages side by side: diffusers (PyTorch, CPU fp32) and Darkroom on the same full-size random SDXL base 1.0
folder that `darkroom bench model --random sdxl` writes (~/.cache/darkroom/bench/sdxl-random-fp16), one after the
other in one invocation, 2 threads each: load, a guided 1024 px UNet step (batch 2, with SDXL's added
conditioning), VAE encode and decode at 1024 px, and each process's peak RSS. With --job: the whole img2img job instead,
`StableDiffusionXLImg2ImgPipeline` against `darkroom bench job --random sdxl`, as that runs it (the size, 20 steps of
DPM++ 2M Karras at strength 0.3, guidance 7.5 with a negative prompt, load included), each in its own process so
that its peak RSS is the job's. Run by hand, never by CI:

    swift build -c release -j 2
    .build/release/darkroom bench model --random sdxl --repeats 1 --sizes 1024 --vae-size 1024   # writes the folder once
    ~/venv/bin/python tools/bench/diffusers_sdxl_bench.py [--job]
"""
import argparse
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FOLDER = Path.home() / ".cache/darkroom/bench/sdxl-random-fp16"
TOKENIZER = ROOT / "Tests/Fixtures/models/sd1/diffusers/tokenizer"   # the real CLIP vocabulary (committed)
PROMPT = "a watercolor painting of a lighthouse on a cliff at dawn, soft light"
NEGATIVE = "blurry, low quality"
STEPS, STRENGTH = 20, 0.3


def child(size: int) -> None:
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    torch.set_num_threads(2)
    start = time.perf_counter()
    unet = UNet2DConditionModel.from_pretrained(FOLDER / "unet", torch_dtype=torch.float32).eval()
    print(f"load UNet\t{time.perf_counter() - start}", flush=True)
    latent = size // 8
    sample = torch.full((2, 4, latent, latent), 0.1)
    context = torch.randn(2, 77, 2048, generator=torch.Generator().manual_seed(0))
    added = {"text_embeds": torch.randn(2, 1280, generator=torch.Generator().manual_seed(1)),
             "time_ids": torch.full((2, 6), float(size))}
    with torch.no_grad():
        start = time.perf_counter()
        unet(sample, 500, encoder_hidden_states=context, added_cond_kwargs=added)
        print(f"UNet step {size}px, batch 2\t{time.perf_counter() - start}", flush=True)
    del unet
    vae = AutoencoderKL.from_pretrained(FOLDER / "vae", torch_dtype=torch.float32).eval()
    with torch.no_grad():
        start = time.perf_counter()
        vae.encode(torch.full((1, 3, size, size), 0.1))
        print(f"VAE encode {size}px\t{time.perf_counter() - start}", flush=True)
        start = time.perf_counter()
        vae.decode(torch.full((1, 4, latent, latent), 0.1))
        print(f"VAE decode {size}px\t{time.perf_counter() - start}", flush=True)
    print(f"peak RSS\t{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024}", flush=True)


def job_child(size: int) -> None:
    """The whole job in this process, load included, as `darkroom bench job` runs it."""
    import numpy as np
    import torch
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionXLImg2ImgPipeline
    from PIL import Image
    from transformers import CLIPTokenizer
    torch.set_num_threads(2)
    start = time.perf_counter()
    tokenizer = CLIPTokenizer.from_pretrained(TOKENIZER)
    pipe = StableDiffusionXLImg2ImgPipeline.from_pretrained(FOLDER, tokenizer=tokenizer, tokenizer_2=tokenizer,
                                                            torch_dtype=torch.float32)
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config, use_karras_sigmas=True)
    pipe.set_progress_bar_config(disable=True)
    load = time.perf_counter() - start
    y, x = np.mgrid[0:size, 0:size]
    pixels = np.stack([(x + 2 * y + 60 * c) % 256 for c in range(3)], axis=-1).astype(np.uint8)
    run_start = time.perf_counter()
    with torch.no_grad():
        pipe(PROMPT, negative_prompt=NEGATIVE, image=Image.fromarray(pixels), strength=STRENGTH,
             num_inference_steps=STEPS, guidance_scale=7.5, generator=torch.Generator().manual_seed(1))
    now = time.perf_counter()
    print(f"load\t{load}", flush=True)
    print(f"img2img job\t{now - run_start}", flush=True)
    print(f"whole job\t{now - start}", flush=True)
    print(f"peak RSS\t{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024}", flush=True)


def job(args) -> None:
    theirs = subprocess.run([sys.executable, __file__, "--child", "--job", "--size", str(args.size)], capture_output=True,
                            text=True, check=True).stdout
    ours = subprocess.run([args.darkroom, "bench", "job", "--random", "sdxl", "--size", str(args.size), "--steps",
                           str(STEPS), "--strength", str(STRENGTH)], capture_output=True, text=True, check=True,
                          env=dict(os.environ, DARKROOM_BLAS_CORE=os.environ.get("DARKROOM_BLAS_CORE", "auto"))).stdout
    print(ours)
    print(theirs)
    d = {k: float(v) for k, v in (line.split("\t") for line in theirs.splitlines() if "\t" in line)}
    m = re.search(r"whole job \(load \+ img2img\)\s+([\d.]+) s\s+peak RSS ([\d.]+) GiB", ours)
    if m and "whole job" in d:
        print(f"whole job: Darkroom {float(m[1]):.1f} s, diffusers {d['whole job']:.1f} s, "
              f"ratio {float(m[1]) / d['whole job']:.2f}x")
        print(f"peak RSS: Darkroom {float(m[2]):.2f} GiB, diffusers {d['peak RSS']:.2f} GiB, "
              f"ratio {float(m[2]) / d['peak RSS']:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--darkroom", default=str(ROOT / ".build/release/darkroom"))
    parser.add_argument("--job", action="store_true", help="the whole img2img job instead of the stages")
    args = parser.parse_args()
    if args.child:
        return job_child(args.size) if args.job else child(args.size)
    if args.job:
        return job(args)
    theirs = subprocess.run([sys.executable, __file__, "--child", "--size", str(args.size)], capture_output=True,
                            text=True, check=True).stdout
    ours = subprocess.run([args.darkroom, "bench", "model", "--random", "sdxl", "--repeats", "1", "--sizes", str(args.size),
                           "--vae-size", str(args.size)], capture_output=True, text=True, check=True,
                          env=dict(os.environ, DARKROOM_BLAS_CORE=os.environ.get("DARKROOM_BLAS_CORE", "auto"))).stdout
    print(ours)
    print(theirs)
    d = {k: float(v) for k, v in (line.split("\t") for line in theirs.splitlines() if "\t" in line)}
    for stage in [f"UNet step {args.size}px, batch 2", f"VAE encode {args.size}px", f"VAE decode {args.size}px"]:
        m = re.search(re.escape(stage) + r"\s+([\d.]+) s", ours)
        if m and stage in d:
            print(f"{stage}: Darkroom {float(m[1]):.2f} s, diffusers {d[stage]:.2f} s, ratio {float(m[1]) / d[stage]:.2f}x")
    rss = re.findall(r"peak RSS ([\d.]+) GiB", ours)
    if rss and "peak RSS" in d:
        print(f"peak RSS: Darkroom {float(rss[-1]):.2f} GiB, diffusers {d['peak RSS']:.2f} GiB, "
              f"ratio {float(rss[-1]) / d['peak RSS']:.2f}x")


if __name__ == "__main__":
    main()
