"""Fixtures for DarkroomSchedulers.TorchRandomSource: torch's CPU randn/rand, bit for bit.

    ~/venv/bin/python tools/reference/make_random_fixtures.py [OUT_DIR]   (default Tests/Fixtures/random)

Writes OUT_DIR/random.bin (little-endian float32 values, concatenated) and OUT_DIR/random.json (index).
Each case is one torch.Generator("cpu").manual_seed(seed) followed by one or more draws (randn or rand,
float32) from that same generator, like a diffusers pipeline drawing several tensors. Small outputs are
stored whole; outputs with more than FULL_LIMIT values store the first and last 1000 values, 256 from the
middle, their float64 sum (math.fsum) and an FNV-1a 64 hash of all values' little-endian bytes.

Run with the machine's default environment (no ATEN_CPU_CAPABILITY override): the normal kernel for
numel >= 16 is the AVX2 one (also used under AVX512) and differs from ATEN_CPU_CAPABILITY=default.
"""
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import torch

FULL_LIMIT = 4096
EDGE = 1000
MIDDLE = 256

SEEDS = [0, 1, 42, 1234, 2**32 - 1, 2**32, 2**63, 2**64 - 1]
SHAPES = [[1, 4, 8, 8], [1, 4, 64, 64], [17], [3, 5], [15], [16], [1], [2, 4, 96, 96]]

# (name, seed, [(op, shape), ...]) — consecutive draws from one generator.
SEQUENCES = [
    ("diffusers_like", 42, [("randn", [1, 4, 8, 8]), ("randn", [1, 4, 8, 8]), ("randn", [5])]),
    # Small-path cache: randn(3) leaves r*sin cached; randn(20) and rand do not touch it; randn(1) returns it.
    ("small_cache_across_calls", 7, [("randn", [3]), ("randn", [20]), ("randn", [3]), ("rand", [10]),
                                     ("randn", [1]), ("randn", [33]), ("randn", [2])]),
    ("rand_then_randn", 2024, [("rand", [4, 4]), ("randn", [2, 3]), ("rand", [3]), ("randn", [1, 4, 16, 16])]),
    ("tail_blocks", 99, [("randn", [31]), ("randn", [47]), ("randn", [1, 4, 3, 5]), ("randn", [65])]),
    ("rand_only", 0, [("rand", [1, 4, 8, 8]), ("rand", [5])]),
    ("big_seed_rand", 2**64 - 1, [("rand", [17]), ("randn", [4])]),
]


def fnv1a64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def main() -> None:
    if len(sys.argv) > 1:
        out_dir = Path(sys.argv[1])
    else:  # the package root: the nearest ancestor of this script holding Package.swift
        root = next(p for p in Path(__file__).resolve().parents if (p / "Package.swift").exists())
        out_dir = root / "Tests/Fixtures/random"
    out_dir.mkdir(parents=True, exist_ok=True)
    assert "ATEN_CPU_CAPABILITY" not in os.environ, "generate with the machine's default CPU capability"

    blob = bytearray()
    cases = []

    def record(op: str, shape: list, t: torch.Tensor) -> dict:
        values = t.contiguous().view(-1).numpy().astype("<f4")
        n = values.size
        if n <= FULL_LIMIT:
            ranges = [(0, n)]
        else:
            mid = n // 2 - MIDDLE // 2
            ranges = [(0, EDGE), (mid, MIDDLE), (n - EDGE, EDGE)]
        segments = []
        for start, count in ranges:
            segments.append({"start": start, "count": count, "offset": len(blob) // 4})
            blob.extend(values[start:start + count].tobytes())
        return {
            "op": op,
            "shape": shape,
            "numel": n,
            "segments": segments,
            "sum_f64": math.fsum(values.astype(np.float64).tolist()),
            "fnv1a64": f"{fnv1a64(values.tobytes()):016x}",
        }

    def run(name: str, seed: int, ops: list) -> None:
        g = torch.Generator("cpu").manual_seed(seed)
        results = []
        for op, shape in ops:
            fn = torch.randn if op == "randn" else torch.rand
            results.append(record(op, shape, fn(*shape, generator=g, dtype=torch.float32)))
        cases.append({"name": name, "seed": str(seed), "draws": results})

    for seed in SEEDS:
        for shape in SHAPES:
            run(f"randn_seed{seed}_{'x'.join(map(str, shape))}", seed, [("randn", shape)])
    for name, seed, ops in SEQUENCES:
        run(name, seed, ops)

    index = {
        "generated_by": "tools/reference/make_random_fixtures.py",
        "torch_version": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "normal_kernel": "numel >= 16: AVX2 NormalFill16<float> (avx_mathfun.h log256_ps/sincos256_ps, GCC FMA "
                         "contraction); numel < 16: normal_distribution<double> with glibc log1p/sin/cos",
        "numpy_version": np.__version__,
        "values_file": "random.bin",
        "values_format": "little-endian float32; segment offsets count float32 values",
        "hash": "FNV-1a 64 over the little-endian float32 bytes of the whole output",
        "cases": cases,
    }
    (out_dir / "random.bin").write_bytes(bytes(blob))
    (out_dir / "random.json").write_text(json.dumps(index, indent=1) + "\n")
    print(f"{len(cases)} cases, {len(blob)} bytes of values -> {out_dir}")


if __name__ == "__main__":
    main()
