#!/usr/bin/env python3
"""Generate Tests/Fixtures/safetensors/reference_mixed.safetensors with the reference
safetensors implementation (the official Rust core via its Python binding) and print the
exact values a correct reader must produce.

Setup (any scratch location):
    python3 -m venv /tmp/stvenv && /tmp/stvenv/bin/pip install safetensors numpy
Run from the package root:
    /tmp/stvenv/bin/python tools/make_safetensors_fixture.py
Check a file written by the Swift writer:
    /tmp/stvenv/bin/python tools/make_safetensors_fixture.py --check FILE

The expected values are hard-coded in
Tests/DarkroomWeightsTests/ReferenceFixtureTests.swift as Float bit patterns; they are the
'f32 bits' lines this script prints.
"""
import os
import sys

import numpy as np
import safetensors
from safetensors import safe_open

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "Tests", "Fixtures", "safetensors", "reference_mixed.safetensors")

METADATA = {"format": "pt", "darkroom_fixture": "reference_mixed v1", "unicode": "caf\u00e9 \u2713"}

np.seterr(over="ignore")  # F16_VALUES/F64 → F32 overflow to inf is intended
F32_VALUES = np.array(
    [0.0, -0.0, 1.0, -2.5, 3.14159265, 1e-45, 1.17549435e-38, 3.4028235e38,
     -3.4028235e38, np.inf, -np.inf, 0.1], dtype=np.float32).reshape(3, 4)
F16_VALUES = np.array(
    [0.0, -0.0, 1.0, -2.0, 0.1, 65504.0, 6.1035156e-05, 5.9604645e-08,
     np.inf, -np.inf, np.nan, 1e5], dtype=np.float32).astype(np.float16).reshape(2, 6)
# bfloat16 has no numpy dtype: hand the raw uint16 bit patterns to the serializer.
BF16_BITS = np.array(
    [0x0000, 0x8000, 0x3F80, 0xC020, 0x4049, 0x7F7F, 0x0001, 0x0080, 0x7F80, 0xFF80, 0x7FC0, 0x3DCD],
    dtype=np.uint16).reshape(4, 3)
F64_VALUES = np.array([1.0 / 3.0, -1e300, 1e-320, 2.5], dtype=np.float64)
I32_VALUES = np.array([[-1, 0], [1, 2147483647]], dtype=np.int32)
SCALAR = np.array(7.25, dtype=np.float32)          # shape []
EMPTY = np.zeros((0,), dtype=np.float16)           # shape [0]


def tensor_spec(dtype, arr):
    """The serializer's input for one tensor (`arr` must stay alive while serializing)."""
    arr = np.require(arr, requirements="C")  # (ascontiguousarray would turn shape () into (1,))
    if hasattr(safetensors, "TensorSpec"):  # safetensors >= 0.8
        return safetensors.TensorSpec(dtype=dtype, shape=list(arr.shape),
                                      data_ptr=arr.ctypes.data, data_len=arr.nbytes)
    return {"dtype": dtype, "shape": list(arr.shape), "data": arr.tobytes()}


def f32_bits(a):
    return [f"0x{int(b):08X}" for b in np.asarray(a, dtype=np.float32).reshape(-1).view(np.uint32)]


def make():
    arrays = {
        "f32_values": ("float32", F32_VALUES),
        "f16_values": ("float16", F16_VALUES),
        "bf16_values": ("bfloat16", BF16_BITS.astype("<u2")),
        "f64_values": ("float64", F64_VALUES),
        "i32_values": ("int32", I32_VALUES),
        "scalar_f32": ("float32", SCALAR),
        "empty_f16": ("float16", EMPTY),
    }
    tensors = {name: tensor_spec(dtype, arr) for name, (dtype, arr) in arrays.items()}
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    safetensors.serialize_file(tensors, OUT, metadata=METADATA)
    print(f"wrote {os.path.normpath(OUT)} with safetensors {safetensors.__version__}, numpy {np.__version__}")

    # Read back with the reference reader and print what a reader must return.
    with safe_open(OUT, framework="numpy") as f:
        assert f.metadata() == METADATA, f.metadata()
        print("metadata", f.metadata())
        for name in sorted(f.keys()):
            sl = f.get_slice(name)
            print(f"{name}: dtype {sl.get_dtype()} shape {sl.get_shape()}")
    expected = {
        "f32_values": F32_VALUES,
        "f16_values": F16_VALUES.astype(np.float32),
        "bf16_values": (BF16_BITS.astype(np.uint32) << 16).view(np.float32),
        "f64_values": F64_VALUES.astype(np.float32),
        "scalar_f32": SCALAR,
        "empty_f16": EMPTY.astype(np.float32),
    }
    for name, values in expected.items():
        print(f"{name} values  {np.asarray(values, dtype=np.float32).reshape(-1).tolist()}")
        print(f"{name} f32 bits {', '.join(f32_bits(values))}")
    print(f"i32_values values {I32_VALUES.reshape(-1).tolist()}")


def check(path):
    """Read a file (e.g. written by the Swift writer) with the reference implementation."""
    with safe_open(path, framework="numpy") as f:
        print("metadata", f.metadata())
        for name in sorted(f.keys()):
            sl = f.get_slice(name)
            dtype = sl.get_dtype()
            if dtype == "BF16":
                # numpy has no bfloat16: view the raw bits through the raw-bytes API.
                print(f"{name}: BF16 shape {sl.get_shape()} (bits checked via raw bytes below)")
                continue
            t = f.get_tensor(name)
            print(f"{name}: {dtype} shape {list(t.shape)} values {t.reshape(-1)[:16].tolist()}")
    # deserialize() validates the whole buffer again and hands out raw bytes (BF16 included).
    with open(path, "rb") as fh:
        data = fh.read()
    loaded = safetensors.deserialize(data)
    for name, info in loaded:
        if info["dtype"] in ("BF16", "bfloat16"):
            bits = np.frombuffer(info["data"], dtype="<u2")
            vals = (bits.astype(np.uint32) << 16).view(np.float32)
            print(f"{name}: BF16 shape {info['shape']} values {vals[:16].tolist()}")
    print("OK: reference implementation read", path)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--check":
        check(sys.argv[2])
    else:
        make()
