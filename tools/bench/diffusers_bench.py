"""Times diffusers (PyTorch, CPU, fp32) and Darkroom on the same checkpoint and stages, and prints one table
with the ratios. Run by hand, never by CI (it needs torch, diffusers and transformers in a virtualenv):

    swift build -c release -j 2
    .build/release/darkroom bench model --repeats 1     # creates ~/.cache/darkroom/bench/sd15-random-fp16 once
    ~/venv/bin/python tools/bench/diffusers_bench.py [CHECKPOINT_FOLDER]

The checkpoint is the full-size random-weight SD 1.5 diffusers folder that `darkroom bench` writes (fp16 on
disk; diffusers loads it as fp32, Darkroom computes in fp32). Both sides use 2 threads (torch.set_num_threads,
OpenBLAS), report the best of --repeats runs per stage, and run the whole img2img job in a process of its own so
that its peak RSS is the job's. The job: 512x512, 20 steps of DPM++ 2M Karras at strength 0.5 (10 UNet steps),
guidance 7.5 with a negative prompt, as `darkroom bench job` runs it.
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
TOKENIZER = ROOT / "Tests/Fixtures/models/sd1/diffusers/tokenizer"   # the real CLIP vocabulary (committed)
PROMPT = "a watercolor painting of a lighthouse on a cliff at dawn, soft light"
NEGATIVE = "blurry, low quality"


def best(fn, repeats):
    import torch
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        with torch.no_grad():
            fn()
        times.append(time.perf_counter() - start)
    return min(times)


def peak_rss_gib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024


def stages(folder: Path, sizes, repeats) -> None:
    """Child process: prints 'stage<TAB>seconds<TAB>rss' lines for the networks."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel
    torch.set_num_threads(2)
    start = time.perf_counter()
    unet = UNet2DConditionModel.from_pretrained(folder / "unet", torch_dtype=torch.float32).eval()
    vae = AutoencoderKL.from_pretrained(folder / "vae", torch_dtype=torch.float32).eval()
    text = CLIPTextModel.from_pretrained(folder / "text_encoder", dtype=torch.float32).eval()
    print(f"load\t{time.perf_counter() - start}\t{peak_rss_gib()}", flush=True)
    ids = torch.full((2, 77), 49407, dtype=torch.long)
    context = None

    def encode():
        nonlocal context
        context = text(ids)[0]
    print(f"text encoder, batch 2\t{best(encode, repeats)}\t{peak_rss_gib()}", flush=True)
    for size in sizes:
        sample = torch.full((2, 4, size // 8, size // 8), 0.1)
        t = best(lambda: unet(sample, 500, encoder_hidden_states=context), repeats)
        print(f"UNet step {size}px, batch 2\t{t}\t{peak_rss_gib()}", flush=True)
    image = torch.full((1, 3, 512, 512), 0.1)
    mean = vae.encode(image).latent_dist.mean
    print(f"VAE encode 512px\t{best(lambda: vae.encode(image), repeats)}\t{peak_rss_gib()}", flush=True)
    print(f"VAE decode 512px\t{best(lambda: vae.decode(mean), repeats)}\t{peak_rss_gib()}", flush=True)


def job(folder: Path) -> None:
    """Child process: the whole img2img job, load included."""
    import numpy as np
    import torch
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionImg2ImgPipeline
    from PIL import Image
    from transformers import CLIPTokenizer
    torch.set_num_threads(2)
    start = time.perf_counter()
    pipe = StableDiffusionImg2ImgPipeline.from_pretrained(
        folder, tokenizer=CLIPTokenizer.from_pretrained(TOKENIZER), torch_dtype=torch.float32,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config, use_karras_sigmas=True)
    pipe.set_progress_bar_config(disable=True)
    load = time.perf_counter() - start
    y, x = np.mgrid[0:512, 0:512]
    pixels = np.stack([(x + 2 * y + 60 * c) % 256 for c in range(3)], axis=-1).astype(np.uint8)
    run_start = time.perf_counter()
    pipe(PROMPT, negative_prompt=NEGATIVE, image=Image.fromarray(pixels), strength=0.5, num_inference_steps=20,
         guidance_scale=7.5, generator=torch.Generator().manual_seed(1))
    now = time.perf_counter()
    print(f"load\t{load}\t{peak_rss_gib()}", flush=True)
    print(f"img2img job\t{now - run_start}\t{peak_rss_gib()}", flush=True)
    print(f"whole job\t{now - start}\t{peak_rss_gib()}", flush=True)


def child(args, mode):
    out = subprocess.run([sys.executable, __file__, str(args.checkpoint), "--child", mode, "--repeats", str(args.repeats),
                          "--sizes", *map(str, args.sizes)],
                         capture_output=True, text=True, check=True).stdout
    return {name: (float(t), float(rss)) for name, t, rss in (line.split("\t") for line in out.splitlines() if "\t" in line)}


def darkroom(args, *command):
    out = subprocess.run([args.darkroom, "bench", command[0], str(args.checkpoint), *command[1:]], capture_output=True, text=True,
                         check=True, env=dict(os.environ, DARKROOM_BLAS_CORE=os.environ.get("DARKROOM_BLAS_CORE", "auto"))).stdout
    rows, kernel = {}, ""
    for line in out.splitlines():
        if line.startswith("OpenBLAS"):
            kernel = line.split(" kernels")[0]
        m = re.match(r"(.+?)\s+([\d.]+) s\s.*?peak RSS ([\d.]+) GiB", line)
        if m:
            rows[m[1].strip()] = (float(m[2]), float(m[3]))
    return rows, kernel


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("checkpoint", nargs="?", type=Path, default=Path.home() / ".cache/darkroom/bench/sd15-random-fp16")
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 768])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--darkroom", default=str(ROOT / ".build/release/darkroom"))
    parser.add_argument("--child", choices=["stages", "job"])
    args = parser.parse_args()
    if args.child == "stages":
        return stages(args.checkpoint, args.sizes, args.repeats)
    if args.child == "job":
        return job(args.checkpoint)

    theirs = child(args, "stages")
    print("diffusers:", theirs, flush=True)
    theirs_job = child(args, "job")
    print("diffusers job:", theirs_job, flush=True)
    ours, kernel = darkroom(args, "model", "--repeats", str(args.repeats), "--sizes", *map(str, args.sizes))
    print("Darkroom:", ours, flush=True)
    ours_job, _ = darkroom(args, "job")
    print("Darkroom job:", ours_job, flush=True)

    import torch
    import diffusers
    print(f"{'stage':<34}{'diffusers fp32':>16}{'Darkroom':>12}{'ratio':>8}")
    print(f"{'':<34}{'torch ' + torch.__version__:>16}{kernel.replace('OpenBLAS ', ''):>12}")

    def row(label, a, b, rss=False):
        if a is None or b is None:
            return
        i = 1 if rss else 0
        unit = "GiB" if rss else "s"
        print(f"{label:<34}{a[i]:>12.2f} {unit:<3}{b[i]:>8.2f} {unit:<3}{b[i] / a[i]:>7.2f}x")
    row("load (warm page cache)", theirs.get("load"), ours.get("load"))
    row("text encoder, batch 2", theirs.get("text encoder, batch 2"), ours.get("text encoder, batch 2"))
    for size in args.sizes:
        key = f"UNet step {size}px, batch 2"
        row(key, theirs.get(key), ours.get(key))
    row("VAE encode 512px", theirs.get("VAE encode 512px"), ours.get("VAE encode 512px"))
    row("VAE decode 512px", theirs.get("VAE decode 512px"), ours.get("VAE decode 512px"))
    job_key = next((k for k in ours_job if k.startswith("img2img")), None)
    row("img2img job 512px (10 UNet steps)", theirs_job.get("img2img job"), ours_job.get(job_key))
    whole = next((k for k in ours_job if k.startswith("whole job")), None)
    row("whole job incl. load", theirs_job.get("whole job"), ours_job.get(whole))
    row("whole job peak RSS", theirs_job.get("whole job"), ours_job.get(whole), rss=True)
    print(f"diffusers {diffusers.__version__}, 2 threads each; best of {args.repeats} per stage; one job run each")


if __name__ == "__main__":
    main()
