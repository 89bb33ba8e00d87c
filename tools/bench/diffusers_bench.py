"""Times diffusers (PyTorch, CPU, fp32) on the same UNet and VAE stages and checkpoint as `darkroom bench model`,
and prints both side by side with ratios. Run by hand, never by CI:

    /work/venv/bin/python tools/reference/make_fullsize_checkpoint.py /tmp/sd15.safetensors   # once
    swift build -c release -j 2
    /work/venv/bin/python tools/bench/diffusers_bench.py /tmp/sd15.safetensors

The checkpoint is loaded by diffusers' own `from_single_file`, described by the config folder the
generator writes beside it; torch uses as many threads as Darkroom's OpenBLAS (2 here).
"""
import argparse
import re
import resource
import subprocess
import time
from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel


def timed(fn):
    start = time.perf_counter()
    with torch.no_grad():
        fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("checkpoint")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--darkroom", default=".build/release/darkroom")
    args = parser.parse_args()
    torch.set_num_threads(2)
    ckpt = Path(args.checkpoint)
    config = ckpt.with_name(ckpt.stem + "-config")
    rows = {}
    start = time.perf_counter()
    unet = UNet2DConditionModel.from_single_file(str(ckpt), config=str(config), subfolder="unet", torch_dtype=torch.float32).eval()
    vae = AutoencoderKL.from_single_file(str(ckpt), config=str(config), subfolder="vae", torch_dtype=torch.float32).eval()
    rows["load"] = time.perf_counter() - start
    ids = torch.full((2, 77), 49407, dtype=torch.long)
    latent = args.size // 8
    sample = torch.full((2, 4, latent, latent), 0.1)
    context = torch.zeros(2, 77, 768)
    rows["UNet, batch 2"] = timed(lambda: unet(sample, 500, encoder_hidden_states=context))
    image = torch.full((1, 3, args.size, args.size), 0.1)
    rows["VAE encode"] = timed(lambda: vae.encode(image))
    rows["VAE decode"] = timed(lambda: vae.decode(torch.full((1, 4, latent, latent), 0.1)))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024

    out = subprocess.run([args.darkroom, "bench", "model", str(ckpt), "--size", str(args.size), "--vae"],
                         capture_output=True, text=True, check=True).stdout
    ours = {}
    for line in out.splitlines():
        m = re.match(r"(load|UNet \S+, batch 2|VAE encode \S+|VAE decode \S+)\s+([\d.]+) s", line)
        if m:
            key = "load" if m[1] == "load" else "UNet, batch 2" if m[1].startswith("UNet") else m[1].split(" ")[0] + " " + m[1].split(" ")[1]
            ours[key] = float(m[2])
    print(f"{'stage (' + str(args.size) + 'px)':<22}{'diffusers fp32':>16}{'Darkroom':>12}{'ratio':>8}")
    for key, theirs in rows.items():
        mine = ours.get(key)
        ratio = f"{mine / theirs:.2f}x" if mine else "-"
        print(f"{key:<22}{theirs:>14.2f} s{(f'{mine:.2f} s' if mine else '-'):>12}{ratio:>8}")
    print(f"diffusers peak RSS {rss:.2f} GiB (load of UNet + VAE; Darkroom's figures above include its text encoder)")


if __name__ == "__main__":
    main()
