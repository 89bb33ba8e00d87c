#!/usr/bin/env python3
"""Generate PyTorch reference fixtures for Darkroom's tensor kernels.

Writes Tests/Fixtures/ops/ops.safetensors (relative to the repo root).

Conventions
-----------
* Tensor names are ``<case>.<role>`` (e.g. ``linear.x``, ``linear.out``).
* Every tensor is float32 and contiguous.
* Inputs and weights are drawn as float32 from a per-case ``torch.Generator``
  (seeded from the case name), then promoted to float64 for the reference
  computation; expected outputs are cast back to float32. The timestep
  embedding cases are the exception: they call diffusers, which computes in
  float32, and say so in their metadata.
* File metadata: one key per case whose value is a compact JSON object of that
  case's parameters, plus ``generator`` and ``torch``.
* Paddings are always given as [left, right, top, bottom].

The output is deterministic: running the script twice yields identical bytes.
"""

from __future__ import annotations

import json
import math
import zlib
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

REPO_ROOT = Path(__file__).resolve().parents[2]
OUT_PATH = REPO_ROOT / "Tests" / "Fixtures" / "ops" / "ops.safetensors"
GENERATOR_NAME = "tools/reference/make_op_fixtures.py"

tensors: dict[str, torch.Tensor] = {}
metadata: dict[str, str] = {}


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def case_generator(case: str) -> torch.Generator:
    """A CPU generator seeded deterministically from the case name."""
    g = torch.Generator(device="cpu")
    g.manual_seed(zlib.crc32(case.encode("utf-8")))
    return g


def randn(g: torch.Generator, *shape: int, scale: float = 1.0, shift: float = 0.0) -> torch.Tensor:
    """float32 normal samples; scale/shift are applied in float32."""
    t = torch.randn(*shape, generator=g, dtype=torch.float32)
    if scale != 1.0:
        t = t * scale
    if shift != 0.0:
        t = t + shift
    return t.contiguous()


def put(case: str, role: str, t: torch.Tensor) -> None:
    name = f"{case}.{role}"
    assert name not in tensors, name
    tensors[name] = t.detach().to(torch.float32).contiguous().clone()


def meta(case: str, **params) -> None:
    assert case not in metadata, case
    metadata[case] = json.dumps(params, separators=(",", ":"), sort_keys=True)


def d(t: torch.Tensor) -> torch.Tensor:
    return t.double()


# --------------------------------------------------------------------------
# cases
# --------------------------------------------------------------------------

def case_linear() -> None:
    c = "linear"
    g = case_generator(c)
    x = randn(g, 2, 7, 33)
    w = randn(g, 19, 33, scale=1.0 / math.sqrt(33))
    b = randn(g, 19, scale=0.5)
    out = F.linear(d(x), d(w), d(b))
    for role, t in (("x", x), ("weight", w), ("bias", b), ("out", out)):
        put(c, role, t)
    meta(c, in_features=33, out_features=19)


def case_matmul() -> None:
    c = "matmul"
    g = case_generator(c)
    a = randn(g, 3, 5, 17)
    b = randn(g, 3, 17, 11, scale=1.0 / math.sqrt(17))
    out = d(a) @ d(b)
    for role, t in (("a", a), ("b", b), ("out", out)):
        put(c, role, t)
    meta(c)


def conv_case(c: str, n: int, cin: int, h: int, w_: int, cout: int, k: int,
              stride: int, padding: list[int], note: str | None = None) -> None:
    """padding is [left, right, top, bottom], applied with F.pad before a
    padding-0 convolution (identical to conv2d's own padding when symmetric)."""
    g = case_generator(c)
    x = randn(g, n, cin, h, w_)
    w = randn(g, cout, cin, k, k, scale=1.0 / math.sqrt(cin * k * k))
    b = randn(g, cout, scale=0.5)
    left, right, top, bottom = padding
    if left == right and top == bottom:
        out = F.conv2d(d(x), d(w), d(b), stride=stride, padding=(top, left))
    else:
        out = F.conv2d(F.pad(d(x), (left, right, top, bottom)), d(w), d(b), stride=stride, padding=0)
    for role, t in (("x", x), ("weight", w), ("bias", b), ("out", out)):
        put(c, role, t)
    params = dict(stride=stride, padding=padding, dilation=1, groups=1, kernel=k)
    if note:
        params["note"] = note
    meta(c, **params)


def case_convs() -> None:
    conv_case("conv1x1", 2, 16, 9, 7, 24, 1, stride=1, padding=[0, 0, 0, 0])
    conv_case("conv3x3", 2, 8, 13, 11, 12, 3, stride=1, padding=[1, 1, 1, 1])
    conv_case("conv3x3_cin4", 1, 4, 10, 12, 16, 3, stride=1, padding=[1, 1, 1, 1])
    conv_case("conv3x3_big", 1, 32, 40, 36, 32, 3, stride=1, padding=[1, 1, 1, 1])
    conv_case("conv3x3_s2", 1, 8, 14, 10, 8, 3, stride=2, padding=[1, 1, 1, 1])
    conv_case("conv3x3_s2_pad0101", 1, 6, 12, 10, 6, 3, stride=2, padding=[0, 1, 0, 1],
              note="conv2d(F.pad(x,(0,1,0,1)),stride=2,padding=0)")


def groupnorm_case(c: str, shape: tuple[int, ...], groups: int, eps: float, with_silu: bool) -> None:
    g = case_generator(c)
    ch = shape[1]
    x = randn(g, *shape, scale=2.0, shift=0.5)
    w = randn(g, ch, scale=0.5, shift=1.0)
    b = randn(g, ch, scale=0.5)
    out = F.group_norm(d(x), groups, d(w), d(b), eps=eps)
    put(c, "x", x)
    put(c, "weight", w)
    put(c, "bias", b)
    put(c, "out", out)
    params = dict(groups=groups, eps=eps)
    if with_silu:
        put(c, "out_silu", F.silu(out))
        params["out_silu"] = "silu(out)"
    meta(c, **params)


def case_norms() -> None:
    groupnorm_case("groupnorm", (2, 32, 5, 6), groups=8, eps=1e-6, with_silu=True)
    groupnorm_case("groupnorm_eps5", (1, 64, 3, 4), groups=32, eps=1e-5, with_silu=False)

    c = "layernorm"
    g = case_generator(c)
    x = randn(g, 2, 7, 48, scale=2.0, shift=0.5)
    w = randn(g, 48, scale=0.5, shift=1.0)
    b = randn(g, 48, scale=0.5)
    out = F.layer_norm(d(x), (48,), d(w), d(b), eps=1e-5)
    for role, t in (("x", x), ("weight", w), ("bias", b), ("out", out)):
        put(c, role, t)
    meta(c, normalized_shape=[48], eps=1e-5)


def case_activations() -> None:
    c = "softmax"
    g = case_generator(c)
    x = randn(g, 3, 5, 37, scale=10.0)
    put(c, "x", x)
    put(c, "out", torch.softmax(d(x), dim=-1))
    meta(c, dim=-1)

    c = "silu"
    x = randn(case_generator(c), 4, 257, scale=3.0)
    put(c, "x", x)
    put(c, "out", F.silu(d(x)))
    meta(c, formula="x*sigmoid(x)")

    c = "gelu"
    x = randn(case_generator(c), 4, 257, scale=3.0)
    put(c, "x", x)
    put(c, "out", F.gelu(d(x)))
    meta(c, approximate="none", formula="0.5*x*(1+erf(x/sqrt(2)))")

    c = "quick_gelu"
    x = randn(case_generator(c), 4, 257, scale=3.0)
    put(c, "x", x)
    xd = d(x)
    put(c, "out", xd * torch.sigmoid(1.702 * xd))
    meta(c, alpha=1.702, formula="x*sigmoid(1.702*x)")

    c = "geglu"
    x = randn(case_generator(c), 2, 5, 48)
    hidden, gate = d(x).chunk(2, dim=-1)
    put(c, "x", x)
    put(c, "out", hidden * F.gelu(gate))
    meta(c, dim=-1, formula="hidden,gate=x.chunk(2,dim=-1); hidden*gelu(gate)", approximate="none")


def case_upsample() -> None:
    c = "upsample_nearest2x"
    x = randn(case_generator(c), 1, 3, 4, 5)
    put(c, "x", x)
    put(c, "out", F.interpolate(d(x), scale_factor=2, mode="nearest"))
    meta(c, scale_factor=2, mode="nearest")


def attention_case(c: str, bh: int, lq: int, lk: int, dh: int) -> None:
    g = case_generator(c)
    q = randn(g, bh, lq, dh)
    k = randn(g, bh, lk, dh)
    v = randn(g, bh, lk, dh)
    scale = 1.0 / math.sqrt(dh)
    scores = (d(q) @ d(k).transpose(-1, -2)) * scale
    out = torch.softmax(scores, dim=-1) @ d(v)
    for role, t in (("q", q), ("k", k), ("v", v), ("out", out)):
        put(c, role, t)
    meta(c, scale=scale, head_dim=dh, layout="[batch*heads,seq,head_dim]",
         formula="softmax(q@k^T*scale)@v")


def case_attention() -> None:
    attention_case("attention_self", 4, 300, 300, 40)
    attention_case("attention_cross", 4, 300, 77, 64)


def case_timestep() -> None:
    from diffusers.models.embeddings import get_timestep_embedding

    t = torch.tensor([1.0, 500.0, 999.0], dtype=torch.float32)
    for c, flip, shift in (("timestep_embedding", True, 0), ("timestep_embedding_noflip", False, 1)):
        out = get_timestep_embedding(t, 32, flip_sin_to_cos=flip, downscale_freq_shift=shift)
        assert out.dtype == torch.float32
        put(c, "t", t)
        put(c, "out", out)
        meta(c, dim=32, flip_sin_to_cos=flip, downscale_freq_shift=shift, scale=1, max_period=10000,
             compute_dtype="float32",
             note="diffusers get_timestep_embedding, which computes in float32")


def case_elementwise() -> None:
    c = "broadcast_add"
    g = case_generator(c)
    a = randn(g, 2, 3, 4, 5)
    b = randn(g, 1, 3, 1, 1)
    put(c, "a", a)
    put(c, "b", b)
    put(c, "out", d(a) + d(b))
    meta(c, op="add")

    c = "broadcast_mul"
    g = case_generator(c)
    a = randn(g, 2, 3, 4, 5)
    b = randn(g, 2, 3, 1, 1)
    put(c, "a", a)
    put(c, "b", b)
    put(c, "out", d(a) * d(b))
    meta(c, op="mul")

    c = "bias_add_lastdim"
    g = case_generator(c)
    a = randn(g, 2, 7, 16)
    b = randn(g, 16)
    put(c, "a", a)
    put(c, "b", b)
    put(c, "out", d(a) + d(b))
    meta(c, op="add")

    c = "permute"
    x = randn(case_generator(c), 2, 3, 4, 5)
    put(c, "x", x)
    put(c, "out", x.permute(0, 2, 3, 1).contiguous())
    meta(c, dims=[0, 2, 3, 1])


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)

    case_linear()
    case_matmul()
    case_convs()
    case_norms()
    case_activations()
    case_upsample()
    case_attention()
    case_timestep()
    case_elementwise()

    for name, t in tensors.items():
        assert t.dtype == torch.float32 and t.is_contiguous(), name
        assert torch.isfinite(t).all(), name

    file_meta = {"generator": GENERATOR_NAME, "torch": torch.__version__}
    file_meta.update(metadata)

    OUT_PATH.parent.mkdir(parents=True, exist_ok=True)
    ordered = {k: tensors[k] for k in sorted(tensors)}
    save_file(ordered, str(OUT_PATH), metadata=file_meta)
    canonicalize_header(OUT_PATH)

    size = OUT_PATH.stat().st_size
    print(f"wrote {OUT_PATH.relative_to(REPO_ROOT)}: {len(tensors)} tensors, {size} bytes")


def canonicalize_header(path: Path) -> None:
    """Rewrite the JSON header with sorted keys so the bytes do not depend on
    hash-map iteration order inside the safetensors writer. The header keeps
    its length (same content, same separators), so data offsets are
    unchanged; any slack is padded with spaces as the format allows."""
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    canon = json.dumps(header, separators=(",", ":"), sort_keys=True, ensure_ascii=True).encode("utf-8")
    if len(canon) > n:
        raise RuntimeError("canonical header longer than original")
    canon = canon + b" " * (n - len(canon))
    path.write_bytes(raw[:8] + canon + raw[8 + n:])


if __name__ == "__main__":
    main()
