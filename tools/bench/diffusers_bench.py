"""Times diffusers (PyTorch, CPU) and Darkroom on the same checkpoint and stages, each in fp32 and in bf16
(diffusers: `torch.autocast("cpu", dtype=torch.bfloat16)`; Darkroom: `--precision bf16`), one after the other in
one invocation, and prints one table with the ratios and this machine's sgemm peak. Run by hand, never by CI (it
needs torch, diffusers and transformers in a virtualenv):

    swift build -c release -j 2
    .build/release/darkroom bench model --repeats 1     # creates ~/.cache/darkroom/bench/sd15-random-fp16 once
    ~/venv/bin/python tools/bench/diffusers_bench.py [CHECKPOINT_FOLDER] [--float32-weights]

The checkpoint is the full-size random-weight SD 1.5 diffusers folder that `darkroom bench` writes (fp16 on
disk, or fp32 with --float32-weights; diffusers loads it as fp32). Both sides use 2 threads (torch.set_num_threads,
OpenBLAS/oneDNN), report the best of --repeats runs per stage, and run the whole img2img job in a process of its
own so that its peak RSS is the job's. The job: 512x512, 20 steps of DPM++ 2M Karras at strength 0.5 (10 UNet
steps), guidance 7.5 with a negative prompt, as `darkroom bench job` runs it. --precisions fp32 skips bf16.
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


def precision_context(precision: str):
    import contextlib
    import torch
    if precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def best(fn, repeats, precision="fp32"):
    import torch
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        with torch.no_grad(), precision_context(precision):
            fn()
        times.append(time.perf_counter() - start)
    return min(times)


def peak_rss_gib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024


def stages(folder: Path, sizes, repeats, precision) -> None:
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
    print(f"text encoder, batch 2\t{best(encode, repeats, precision)}\t{peak_rss_gib()}", flush=True)
    context = context.float()
    for size in sizes:
        sample = torch.full((2, 4, size // 8, size // 8), 0.1)
        t = best(lambda: unet(sample, 500, encoder_hidden_states=context), repeats, precision)
        print(f"UNet step {size}px, batch 2\t{t}\t{peak_rss_gib()}", flush=True)
    image = torch.full((1, 3, 512, 512), 0.1)
    with torch.no_grad():
        mean = vae.encode(image).latent_dist.mean
    print(f"VAE encode 512px\t{best(lambda: vae.encode(image), repeats, precision)}\t{peak_rss_gib()}", flush=True)
    print(f"VAE decode 512px\t{best(lambda: vae.decode(mean), repeats, precision)}\t{peak_rss_gib()}", flush=True)


def job(folder: Path, precision: str) -> None:
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
    with torch.no_grad(), precision_context(precision):
        pipe(PROMPT, negative_prompt=NEGATIVE, image=Image.fromarray(pixels), strength=0.5, num_inference_steps=20,
             guidance_scale=7.5, generator=torch.Generator().manual_seed(1))
    now = time.perf_counter()
    print(f"load\t{load}\t{peak_rss_gib()}", flush=True)
    print(f"img2img job\t{now - run_start}\t{peak_rss_gib()}", flush=True)
    print(f"whole job\t{now - start}\t{peak_rss_gib()}", flush=True)


def child(args, mode, precision):
    out = subprocess.run([sys.executable, __file__, str(args.checkpoint), "--child", mode, "--repeats", str(args.repeats),
                          "--sizes", *map(str, args.sizes), "--child-precision", precision],
                         capture_output=True, text=True, check=True).stdout
    return {name: (float(t), float(rss)) for name, t, rss in (line.split("\t") for line in out.splitlines() if "\t" in line)}


def darkroom(args, *command):
    extra = ["--float32-weights"] if args.float32_weights and args.default_checkpoint else []
    checkpoint = [] if args.default_checkpoint else [str(args.checkpoint)]
    out = subprocess.run([args.darkroom, "bench", command[0], *checkpoint, *extra, *command[1:]], capture_output=True,
                         text=True, check=True,
                         env=dict(os.environ, DARKROOM_BLAS_CORE=os.environ.get("DARKROOM_BLAS_CORE", "auto"))).stdout
    rows, info = {}, {}
    for line in out.splitlines():
        if line.startswith("OpenBLAS"):
            info["kernel"] = line.split(" kernels")[0]
        if line.startswith("sgemm peak"):
            info["peak"] = float(re.search(r"([\d.]+) GFLOP/s", line)[1])
        m = re.match(r"(.+?)\s+([\d.]+) s\s.*?peak RSS ([\d.]+) GiB", line)
        if m:
            rows[m[1].strip()] = (float(m[2]), float(m[3]))
    return rows, info


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("checkpoint", nargs="?", type=Path)
    parser.add_argument("--float32-weights", action="store_true",
                        help="the random SD 1.5 with float32 weights (sd15-random-fp32) instead of float16")
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 768])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--precisions", nargs="+", choices=["fp32", "bf16"], default=["fp32", "bf16"])
    parser.add_argument("--darkroom", default=str(ROOT / ".build/release/darkroom"))
    parser.add_argument("--child", choices=["stages", "job"])
    parser.add_argument("--child-precision", choices=["fp32", "bf16"], default="fp32")
    args = parser.parse_args()
    args.default_checkpoint = args.checkpoint is None
    if args.checkpoint is None:
        name = "sd15-random-fp32" if args.float32_weights else "sd15-random-fp16"
        args.checkpoint = Path.home() / ".cache/darkroom/bench" / name
    if args.child == "stages":
        return stages(args.checkpoint, args.sizes, args.repeats, args.child_precision)
    if args.child == "job":
        return job(args.checkpoint, args.child_precision)

    theirs, ours, info = {}, {}, {}
    for p in args.precisions:
        theirs[p] = child(args, "stages", p)
        theirs[p].update({f"job {k}": v for k, v in child(args, "job", p).items()})
        print(f"diffusers {p}:", theirs[p], flush=True)
        ours[p], info = darkroom(args, "model", "--repeats", str(args.repeats), "--precision", p,
                                 "--sizes", *map(str, args.sizes))
        job_rows, _ = darkroom(args, "job", "--precision", p)
        for k, v in job_rows.items():
            if k.startswith("img2img"):
                ours[p]["job img2img job"] = v
            elif k.startswith("whole job"):
                ours[p]["job whole job"] = v
            elif k == "load":
                ours[p]["job load"] = v
        print(f"Darkroom {p}:", ours[p], flush=True)

    import torch
    import diffusers
    peak = info.get("peak", float("nan"))
    print()
    print(f"sgemm peak of this machine (OpenBLAS, 2048-3072 square): {peak:.0f} GFLOP/s; "
          f"{info.get('kernel', 'OpenBLAS')} kernels; torch {torch.__version__}, diffusers {diffusers.__version__}")
    columns = [("diffusers fp32", theirs.get("fp32")), ("diffusers bf16", theirs.get("bf16")),
               ("Darkroom fp32", ours.get("fp32")), ("Darkroom bf16", ours.get("bf16"))]
    columns = [(label, rows) for label, rows in columns if rows is not None]
    ratios = [("fp32/fp32", "fp32", "fp32")]
    if "bf16" in args.precisions:
        ratios += [("bf16/fp32", "bf16", "fp32"), ("bf16/autocast", "bf16", "bf16")]
    print(f"{'stage':<36}" + "".join(f"{label:>16}" for label, _ in columns) + "".join(f"{r[0]:>15}" for r in ratios))
    stages_list = ["load", "text encoder, batch 2"] + [f"UNet step {size}px, batch 2" for size in args.sizes] + \
        ["VAE encode 512px", "VAE decode 512px", "job img2img job", "job whole job"]
    labels = {"job img2img job": "img2img job 512px (10 UNet steps)", "job whole job": "whole job incl. load"}

    def cell(rows, key, rss):
        value = rows.get(key)
        return f"{value[1 if rss else 0]:>12.2f} {'GiB' if rss else 's':<3}" if value else f"{'-':>16}"

    def ratio(key, ours_p, theirs_p, rss):
        a, b = theirs.get(theirs_p, {}).get(key), ours.get(ours_p, {}).get(key)
        return f"{b[1 if rss else 0] / a[1 if rss else 0]:>14.2f}x" if a and b else f"{'-':>15}"
    for key in stages_list:
        print(f"{labels.get(key, key):<36}" + "".join(cell(rows, key, False) for _, rows in columns)
              + "".join(ratio(key, o, t, False) for _, o, t in ratios))
    key = "job whole job"
    print(f"{'whole job peak RSS':<36}" + "".join(cell(rows, key, True) for _, rows in columns)
          + "".join(ratio(key, o, t, True) for _, o, t in ratios))
    print(f"2 threads each; best of {args.repeats} per stage; one job run each, in its own process")


if __name__ == "__main__":
    main()
