#!/usr/bin/env python3
"""Upscaler reference fixtures: tiny random ESRGAN-family models, run by spandrel (PyTorch).

Writes Tests/Fixtures/upscalers/ (relative to the repo root):

    rrdb_x4_new.safetensors       RRDBNet in Real-ESRGAN's layout (conv_first, body.N.rdbK.convJ, conv_body,
                                  conv_up1/2, conv_hr, conv_last): nf 8, nb 2, gc 32, scale 4
    rrdb_x4_old.safetensors       RRDBNet in the old ESRGAN layout of 4x-UltraSharp and friends (model.0,
                                  model.1.sub.N.RDBK.convJ.0, model.1.sub.NB, model.3, model.6, model.8,
                                  model.10): nf 8, nb 1, scale 4
    rrdb_x2_old.safetensors       old layout with one upsampling step (model.3, model.5, model.7): scale 2
    rrdb_x2_unshuffle.safetensors Real-ESRGAN x2plus-style: the input pixel-unshuffled by 2 (conv_first takes
                                  12 channels), two 2x upsamplings: scale 2 overall
    compact_x4.safetensors        SRVGGNetCompact (realesr-general-x4v3 style): body.0 conv 3->16, body.1 PReLU,
                                  2 more conv+PReLU pairs, body.6 conv 16->48, pixel shuffle 4
    expected.safetensors          float32: input.small [1,3,20,24] and input.odd [1,3,19,23] in [0, 1], and
                                  <model>.output: spandrel's forward of input.small (input.odd for the x2
                                  unshuffle model, which pads it by reflection to even sides)
    expected.json                 what spandrel detected for each model: architecture id, scale, input and
                                  output channels, tags, and the input each was run on

The state dicts are written here key by key as the real files name them (not by spandrel's classes), then
loaded back from the saved files through spandrel's ModelLoader, so the reference is spandrel's detection
and its PyTorch forward. Weights are rounded to float16 (stored F16) and run in float32.

spandrel imports torchvision for two architectures Darkroom does not use (LaMa, RestoreFormer); this
environment's torch is a CPU build without a matching torchvision, so when `import torchvision` fails a stub
module stands in for those imports (no upscaler touches it).

    ~/venv/bin/pip install spandrel
    ~/venv/bin/python tools/reference/make_upscaler_fixtures.py
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "Tests" / "Fixtures" / "upscalers"


def install_torchvision_stub_if_missing() -> None:
    try:
        import torchvision  # noqa: F401
        return
    except Exception:
        pass
    for name in ["torchvision", "torchvision.transforms", "torchvision.transforms.functional"]:
        sys.modules.pop(name, None)
    tv = types.ModuleType("torchvision")
    transforms = types.ModuleType("torchvision.transforms")
    functional = types.ModuleType("torchvision.transforms.functional")

    class InterpolationMode:  # only referenced by LaMa
        NEAREST = "nearest"
        BILINEAR = "bilinear"

    def unavailable(*_args, **_kwargs):
        raise RuntimeError("torchvision stub: not available in this environment")

    functional.InterpolationMode = InterpolationMode
    functional.rotate = unavailable
    functional.normalize = unavailable
    transforms.functional = functional
    tv.transforms = transforms
    sys.modules["torchvision"] = tv
    sys.modules["torchvision.transforms"] = transforms
    sys.modules["torchvision.transforms.functional"] = functional


install_torchvision_stub_if_missing()
import spandrel  # noqa: E402

torch.set_num_threads(1)
GC = 32  # spandrel builds every RRDB with 32 growth channels


class Weights:
    """Random conv weights, uniform in ±1/sqrt(fan_in), rounded to float16."""

    def __init__(self, seed: int):
        self.generator = torch.Generator().manual_seed(seed)
        self.state: dict[str, torch.Tensor] = {}

    def uniform(self, shape, bound):
        t = (torch.rand(shape, generator=self.generator, dtype=torch.float64) * 2 - 1) * bound
        return t.to(torch.float16)

    def conv(self, name: str, cin: int, cout: int, k: int = 3):
        bound = 1.0 / np.sqrt(cin * k * k)
        self.state[f"{name}.weight"] = self.uniform((cout, cin, k, k), bound)
        self.state[f"{name}.bias"] = self.uniform((cout,), bound)

    def prelu(self, name: str, channels: int):
        self.state[f"{name}.weight"] = (0.25 + self.uniform((channels,), 0.1).to(torch.float64)).to(torch.float16)


def rdb_convs(w: Weights, name, nf: int, old: bool):
    for j in range(1, 6):
        cin = nf + (j - 1) * GC
        cout = GC if j < 5 else nf
        w.conv(f"{name}.conv{j}" + (".0" if old else ""), cin, cout)


def rrdb_new(seed, in_nc, nf, nb, upsamplings):
    """Real-ESRGAN (basicsr) RRDBNet keys."""
    w = Weights(seed)
    w.conv("conv_first", in_nc, nf)
    for i in range(nb):
        for k in (1, 2, 3):
            rdb_convs(w, f"body.{i}.rdb{k}", nf, old=False)
    w.conv("conv_body", nf, nf)
    for u in range(1, upsamplings + 1):
        w.conv(f"conv_up{u}", nf, nf)
    w.conv("conv_hr", nf, nf)
    w.conv("conv_last", nf, 3)
    return w.state


def rrdb_old(seed, nf, nb, upsamplings):
    """Old ESRGAN keys: one flattened nn.Sequential `model` (conv, shortcut, [upsample, conv, lrelu]*, conv,
    lrelu, conv)."""
    w = Weights(seed)
    w.conv("model.0", 3, nf)
    for i in range(nb):
        for k in (1, 2, 3):
            rdb_convs(w, f"model.1.sub.{i}.RDB{k}", nf, old=True)
    w.conv(f"model.1.sub.{nb}", nf, nf)
    for u in range(1, upsamplings + 1):
        w.conv(f"model.{3 * u}", nf, nf)
    w.conv(f"model.{3 * upsamplings + 2}", nf, nf)
    w.conv(f"model.{3 * upsamplings + 4}", nf, 3)
    return w.state


def compact(seed, nf, num_conv, scale):
    w = Weights(seed)
    w.conv("body.0", 3, nf)
    w.prelu("body.1", nf)
    for i in range(num_conv):
        w.conv(f"body.{2 + 2 * i}", nf, nf)
        w.prelu(f"body.{3 + 2 * i}", nf)
    w.conv(f"body.{2 + 2 * num_conv}", nf, 3 * scale * scale)
    return w.state


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*"):
        if old.name != "README.md":
            old.unlink()
    g = torch.Generator().manual_seed(1234)
    inputs = {
        "small": torch.rand((1, 3, 20, 24), generator=g, dtype=torch.float32),
        "odd": torch.rand((1, 3, 19, 23), generator=g, dtype=torch.float32),
    }
    models = {
        "rrdb_x4_new": (rrdb_new(1, in_nc=3, nf=8, nb=2, upsamplings=2), "small"),
        "rrdb_x4_old": (rrdb_old(2, nf=8, nb=1, upsamplings=2), "small"),
        "rrdb_x2_old": (rrdb_old(3, nf=8, nb=1, upsamplings=1), "small"),
        "rrdb_x2_unshuffle": (rrdb_new(4, in_nc=12, nf=8, nb=1, upsamplings=2), "odd"),
        "compact_x4": (compact(5, nf=16, num_conv=2, scale=4), "small"),
    }
    expected = {f"input.{k}": v.contiguous() for k, v in inputs.items()}
    described = {}
    for name, (state, input_name) in models.items():
        path = OUT / f"{name}.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
        descriptor = spandrel.ModelLoader(device="cpu").load_from_file(str(path))
        model = descriptor.model.float().eval()
        with torch.no_grad():
            output = model(inputs[input_name])
        expected[f"{name}.output"] = output.contiguous()
        described[name] = {
            "architecture": descriptor.architecture.id,
            "scale": descriptor.scale,
            "input_channels": descriptor.input_channels,
            "output_channels": descriptor.output_channels,
            "tags": list(descriptor.tags),
            "input": f"input.{input_name}",
            "output_shape": list(output.shape),
        }
        print(f"{name}: {descriptor.architecture.id} x{descriptor.scale} {descriptor.tags} -> {list(output.shape)}")
    save_file(expected, str(OUT / "expected.safetensors"))
    meta = {"spandrel": spandrel.__version__, "torch": torch.__version__.split("+")[0], "models": described}
    (OUT / "expected.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
