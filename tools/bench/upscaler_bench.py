"""Times Darkroom and spandrel (PyTorch, CPU) on the same full-size RRDBNet and the same 512 -> 2048 px 4x upscale,
one after the other in one invocation, each in a process of its own (so each peak RSS is that run's), and prints
one table with the ratios and this machine's sgemm peak. Run by hand, never by CI:

    swift build -c release -j 2
    ~/venv/bin/pip install spandrel
    ~/venv/bin/python tools/bench/upscaler_bench.py [--size 512] [--tile 256] [--overlap 32] [--repeats 1]

The model is the RealESRGAN_x4plus-shaped RRDBNet with random weights that `darkroom bench upscaler` writes to
~/.cache/darkroom/bench/rrdbnet-x4-random.safetensors (nf 64, nb 23, gc 32, 16.7 M parameters, float32).
spandrel's ModelLoader loads that file; PyTorch runs it in float32 with 2 threads over the same tiles Darkroom
uses (UpscalerTiling.layout: the fewest tiles of at most --tile px overlapping by at least --overlap px, shrunk to
what that count needs), on the same test pattern. PyTorch's side only pastes the tiles' centres; Darkroom's
blend is part of its time. --tile 0 runs both on the whole image at once.

spandrel imports torchvision for two architectures this does not use; when `import torchvision` fails (a CPU
torch without a matching torchvision), a stub stands in (see tools/reference/make_upscaler_fixtures.py).
"""
import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DARKROOM = ROOT / ".build/release/darkroom"
MODEL = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "darkroom/bench/rrdbnet-x4-random.safetensors"


def layout(size, tile, overlap):
    """UpscalerTiling.layout with grid 1: (origins, length)."""
    if tile <= 0 or size <= tile:
        return [0], size
    overlap = min(overlap, tile - 1)
    count = -(-(size - overlap) // (tile - overlap))
    length = min(tile, -(-(size + (count - 1) * overlap) // count))
    # TileLayout.origins
    n = -(-(size - overlap) // (length - overlap))
    if n <= 1:
        return [0], length
    step = (size - length) / (n - 1)
    return [int(i * step + 0.5) for i in range(n)], length   # Swift's rounded(): half away from zero


def test_image(side):
    import numpy as np
    y, x = np.mgrid[0:side, 0:side]
    dx, dy = (x - side // 2).astype(np.float32), (y - side // 2).astype(np.float32)
    ring = np.where((np.sqrt(dx * dx + dy * dy) / 8).astype(np.int64) % 2 == 0, 0.2, 0.0)
    checker = np.where(((x // 2) + (y // 2)) % 2 == 0, 0.1, 0.0)
    planes = [np.minimum(1, (x + 2 * y + 60 * c) / (4 * side) + ring + checker) for c in range(3)]
    return np.stack(planes)[None].astype(np.float32)


def torch_side(args):
    """Runs in its own process: spandrel loads the file, PyTorch upscales; prints machine-readable lines."""
    import resource
    sys.path.insert(0, str(ROOT / "tools/reference"))
    from make_upscaler_fixtures import install_torchvision_stub_if_missing  # noqa: E402
    install_torchvision_stub_if_missing()
    import torch
    import spandrel
    torch.set_num_threads(2)
    start = time.perf_counter()
    model = spandrel.ModelLoader(device="cpu").load_from_file(str(MODEL)).model.float().eval()
    print(f"load {time.perf_counter() - start:.3f}")
    image = torch.from_numpy(test_image(args.size))
    origins, length = layout(args.size, args.tile, args.overlap)
    scale = 4
    best = float("inf")
    for _ in range(args.repeats):
        start = time.perf_counter()
        out = torch.zeros((1, 3, args.size * scale, args.size * scale))
        with torch.no_grad():
            for y0 in origins:
                for x0 in origins:
                    tile = model(image[:, :, y0:y0 + length, x0:x0 + length])
                    out[:, :, y0 * scale:(y0 + length) * scale, x0 * scale:(x0 + length) * scale] = tile.clamp(0, 1)
        best = min(best, time.perf_counter() - start)
    print(f"upscale {best:.3f}")
    print(f"tiles {len(origins) ** 2}")
    print(f"rss {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024:.3f}")
    print(f"versions torch {torch.__version__} spandrel {spandrel.__version__}")


def darkroom_side(args):
    env = dict(os.environ, DARKROOM_BLAS_CORE=os.environ.get("DARKROOM_BLAS_CORE", "auto"))
    command = [str(DARKROOM), "bench", "upscaler", "--size", str(args.size), "--tile", str(args.tile),
               "--overlap", str(args.overlap), "--repeats", str(args.repeats)]
    output = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
    print(output, end="")
    def seconds(label):
        match = re.search(rf"^{label}.*?\s([0-9.]+) s .*?peak RSS ([0-9.]+) GiB", output, re.M)
        return float(match.group(1)), float(match.group(2))
    load, _ = seconds("load")
    upscale, rss = seconds("upscale")
    peak = re.search(r"sgemm peak.*?: ([0-9.]+) GFLOP/s", output)
    return load, upscale, rss, peak.group(1) if peak else "?"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--overlap", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--torch-side", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.torch_side:
        torch_side(args)
        return
    d_load, d_upscale, d_rss, peak = darkroom_side(args)   # writes the model file on first use
    command = [sys.executable, __file__, "--torch-side", "--size", str(args.size), "--tile", str(args.tile),
               "--overlap", str(args.overlap), "--repeats", str(args.repeats)]
    lines = subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines()
    values = {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in lines if " " in line}
    t_load, t_upscale, t_rss = float(values["load"]), float(values["upscale"]), float(values["rss"])
    print(f"\nsgemm peak {peak} GFLOP/s; {values['versions']}; {values['tiles']} tile(s); 2 threads each side")
    print(f"{'stage':42} {'PyTorch':>10} {'Darkroom':>10} {'ratio':>7}")
    for name, t, d, unit in [("load (warm page cache)", t_load, d_load, "s"),
                             (f"upscale {args.size} -> {args.size * 4} px (tile {args.tile})", t_upscale, d_upscale, "s"),
                             ("peak RSS", t_rss, d_rss, "GiB")]:
        print(f"{name:42} {t:>8.2f} {unit:3} {d:>6.2f} {unit:3} {d / t:>6.2f}x")


if __name__ == "__main__":
    main()
