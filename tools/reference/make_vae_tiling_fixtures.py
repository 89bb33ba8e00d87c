"""Reference outputs of diffusers' tiled VAE (`enable_vae_tiling`) on the committed sd1 fixture VAE.

Writes Tests/Fixtures/models/sd1/vae_tiling.safetensors: an image and a latent with several rows and columns of
tiles (including partial tiles at the right and bottom edges, and a third row, so the in-place blending order of
`_tiled_encode`/`tiled_decode` is exercised), the tiled posterior moments and decoded image, and the tile size
used. The tile is 64 px (8 latents; the fixture VAE has 4 levels) so that small inputs need many tiles; diffusers'
own default is the config's `sample_size`.

    ~/venv/bin/python tools/reference/make_vae_tiling_fixtures.py
"""
from pathlib import Path

import torch
from diffusers import AutoencoderKL
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[2]
FOLDER = ROOT / "Tests/Fixtures/models/sd1"
TILE = 64


@torch.no_grad()
def main() -> None:
    torch.manual_seed(0)
    vae = AutoencoderKL.from_pretrained(FOLDER / "diffusers/vae", torch_dtype=torch.float32).eval()
    vae.enable_tiling()
    vae.tile_sample_min_size = TILE
    vae.tile_latent_min_size = TILE // 2 ** (len(vae.config.block_out_channels) - 1)
    assert vae.tile_overlap_factor == 0.25

    # A smooth image with structure in both directions, in [-1, 1]: 104 x 136 px gives tile rows at 0/48/96 and
    # columns at 0/48/96, the last ones partial.
    g = torch.Generator().manual_seed(1234)
    h, w = 104, 136
    y = torch.linspace(0, 1, h).view(1, 1, h, 1)
    x = torch.linspace(0, 1, w).view(1, 1, 1, w)
    phase = torch.rand(1, 3, 1, 1, generator=g) * 6.28
    image = (torch.sin(7 * x + 5 * y + phase) * 0.6 + 0.3 * torch.cos(11 * x * y + phase) + 0.05 * torch.randn(1, 3, h, w, generator=g)).clamp(-1, 1)
    moments = vae._encode(image)          # the tiled path (the image is wider than a tile)
    posterior = vae.encode(image).latent_dist
    assert torch.equal(posterior.mean, moments[:, :4])

    latent = torch.randn(1, 4, 13, 17, generator=g) / vae.config.scaling_factor  # rows 0/6/12, columns 0/6/12
    decoded = vae.decode(latent).sample
    vae.disable_tiling()
    untiled = vae.decode(latent).sample
    print(f"tiled vs untiled decode: max |diff| = {(decoded - untiled).abs().max().item():.4f}")

    save_file({
        "image": image.contiguous(),
        "moments": moments.contiguous(),
        "latent": latent.contiguous(),
        "decoded": decoded.contiguous(),
        "tile_sample_size": torch.tensor([float(TILE)]),
    }, FOLDER / "vae_tiling.safetensors")
    print("wrote", FOLDER / "vae_tiling.safetensors")


if __name__ == "__main__":
    main()
