"""A full-size Stable Diffusion 1.5-shaped checkpoint with random weights, for load-time, memory and
speed measurements (timings do not depend on weight values). Never committed: it is ~2 GB in fp16.

    ~/venv/bin/python tools/reference/make_fullsize_checkpoint.py OUT.safetensors [--dtype fp16|fp32|bf16]

Architecture: diffusers' SD 1.5 configuration (UNet 320/640/1280/1280, 8 heads, 768-wide context;
VAE 128/256/512/512; CLIP ViT-L/14 text encoder, 12 layers, width 768), converted to the original
single-file (LDM) keys with the same functions that write the committed fixtures.
"""
import argparse
import json
import sys
from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

sys.path.insert(0, str(Path(__file__).parent))
from make_model_fixtures import clip_to_ldm, unet_to_ldm, vae_to_ldm  # noqa: E402
from safetensors.torch import save_file  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--dtype", default="fp16", choices=["fp16", "fp32", "bf16"])
    args = parser.parse_args()
    dtype = {"fp16": torch.float16, "fp32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768, attention_head_dim=8,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"))
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, sample_size=512,
        block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072,
                                        num_hidden_layers=12, num_attention_heads=12, max_position_embeddings=77,
                                        hidden_act="quick_gelu"))
    tensors = {}
    tensors.update(unet_to_ldm(unet))
    tensors.update(vae_to_ldm(vae))
    tensors.update(clip_to_ldm(text))
    tensors = {k: (v.to(dtype) if v.is_floating_point() else v).contiguous() for k, v in tensors.items()}
    save_file(tensors, args.out)
    # A diffusers config folder describing the file, for diffusers' from_single_file(config=...) offline.
    from diffusers import PNDMScheduler
    config = Path(args.out).with_suffix("").with_name(Path(args.out).stem + "-config")
    unet.save_config(config / "unet")
    vae.save_config(config / "vae")
    text.config.save_pretrained(config / "text_encoder")
    PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
                  steps_offset=1, skip_prk_steps=True, set_alpha_to_one=False).save_config(config / "scheduler")
    (config / "model_index.json").write_text(json.dumps({
        "_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"], "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"], "scheduler": ["diffusers", "PNDMScheduler"],
        "safety_checker": [None, None], "feature_extractor": [None, None]}))
    count = sum(v.numel() for v in tensors.values())
    print(f"{args.out}: {len(tensors)} tensors, {count / 1e6:.1f}M parameters, {args.dtype}")


if __name__ == "__main__":
    main()
