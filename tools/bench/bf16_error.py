"""bf16 accuracy on a full-size model (issue 13): one guided UNet call and one VAE decode at 512 px, in float64
(the reference), fp32 and under `torch.autocast("cpu", dtype=torch.bfloat16)` with diffusers, then the same
inputs through Darkroom in fp32 and bf16 (`darkroom bench precision-error`), and one table of relative L2 errors
against float64. Run by hand, never by CI (it needs torch and diffusers in a virtualenv):

    swift build -c release -j 2
    .build/release/darkroom bench model --repeats 1     # creates ~/.cache/darkroom/bench/sd15-random-fp16 once
    ~/venv/bin/python tools/bench/bf16_error.py [CHECKPOINT_FOLDER] [--size 512]

The UNet's inputs: a seeded N(0, 1) latent batch of 2, timestep 500, and the random text encoder's output for a
prompt and an empty negative prompt (as a guided step sees them). The VAE's input: a seeded N(0, 1) latent / 0.18215
scaled as the pipeline does. The inputs and diffusers' outputs go to a safetensors file in the checkpoint's cache
folder (never committed).
"""
import argparse
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOKENIZER = ROOT / "Tests/Fixtures/models/sd1/diffusers/tokenizer"
PROMPT = "a watercolor painting of a lighthouse on a cliff at dawn, soft light"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("checkpoint", nargs="?", type=Path,
                        default=Path.home() / ".cache/darkroom/bench/sd15-random-fp16")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--darkroom", default=str(ROOT / ".build/release/darkroom"))
    args = parser.parse_args()

    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPTextModel, CLIPTokenizer
    torch.set_num_threads(2)
    folder = args.checkpoint
    latent = args.size // 8
    generator = torch.Generator().manual_seed(1303)
    sample = torch.randn(2, 4, latent, latent, generator=generator)
    vae_latent = torch.randn(1, 4, latent, latent, generator=generator)
    tokenizer = CLIPTokenizer.from_pretrained(TOKENIZER)
    ids = tokenizer(["", PROMPT], padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        text = CLIPTextModel.from_pretrained(folder / "text_encoder", torch_dtype=torch.float32)
        context = text(ids)[0].float()
        del text
        tensors = {"unet.sample": sample, "unet.context": context, "unet.t": torch.tensor([500.0]),
                   "vae.latent": vae_latent}
        unet = UNet2DConditionModel.from_pretrained(folder / "unet", torch_dtype=torch.float32)
        tensors["unet.out_fp32"] = unet(sample, 500, encoder_hidden_states=context).sample
        with torch.autocast("cpu", dtype=torch.bfloat16):
            tensors["unet.out_autocast"] = unet(sample, 500, encoder_hidden_states=context).sample.float()
        unet = unet.double()
        tensors["unet.out_fp64"] = unet(sample.double(), 500, encoder_hidden_states=context.double()).sample.float()
        del unet
        vae = AutoencoderKL.from_pretrained(folder / "vae", torch_dtype=torch.float32)
        tensors["vae.out_fp32"] = vae.decode(vae_latent).sample
        with torch.autocast("cpu", dtype=torch.bfloat16):
            tensors["vae.out_autocast"] = vae.decode(vae_latent).sample.float()
        vae = vae.double()
        tensors["vae.out_fp64"] = vae.decode(vae_latent.double()).sample.float()
    out = Path.home() / ".cache/darkroom/bench" / f"bf16_error_{args.size}.safetensors"
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(out))
    env = dict(os.environ, DARKROOM_BLAS_CORE=os.environ.get("DARKROOM_BLAS_CORE", "auto"))
    subprocess.run([args.darkroom, "bench", "precision-error", str(out), str(folder)], check=True, env=env)


if __name__ == "__main__":
    main()
