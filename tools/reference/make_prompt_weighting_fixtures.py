"""Reference for A1111-style weighted, chunked prompt encoding on the sd1 fixture text encoder.

    HF_HUB_OFFLINE=1 ~/venv/bin/python tools/reference/make_prompt_weighting_fixtures.py

Chunks and weights come from this repo's Python port of A1111's `tokenize_line`
(make_tokenizer_fixtures.py); the hidden states come from transformers' CLIPTextModel loaded from
Tests/Fixtures/models/sd1/diffusers; the weighting is A1111 `sd_hijack_clip.py::process_tokens`:
z = encode(chunk); m0 = z.mean(); z *= weights[..., None]; z *= m0 / z.mean(); chunks hstacked.
Writes Tests/Fixtures/models/sd1/weighted_prompt.safetensors.
"""
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import CLIPTextModel, CLIPTokenizer

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from make_tokenizer_fixtures import tokenize_line  # noqa: E402

ROOT = HERE.parent.parent
FOLDER = ROOT / "Tests/Fixtures/models/sd1/diffusers"
PROMPTS = [
    "a (photograph:1.3) of an [astronaut] riding a ((horse)), oil painting",
    "masterpiece, " + ", ".join(f"detail {i}" for i in range(40)) + ", (sharp focus:1.4) BREAK a red (fox:0.7)",
]


def main() -> None:
    torch.set_num_threads(1)
    tok = CLIPTokenizer.from_pretrained(str(FOLDER / "../diffusers/tokenizer"))
    model = CLIPTextModel.from_pretrained(str(FOLDER / "text_encoder"), dtype=torch.float32).eval()
    tensors = {}
    for index, prompt in enumerate(PROMPTS):
        pairs = tokenize_line(tok, prompt, pad_token=tok.eos_token_id)
        chunks, weights = [list(ids) for ids, _ in pairs], [list(ws) for _, ws in pairs]
        parts = []
        with torch.no_grad():
            for ids, w in zip(chunks, weights):
                z = model(torch.tensor([ids])).last_hidden_state
                original_mean = z.mean()
                z = z * torch.tensor(w, dtype=z.dtype)[None, :, None]
                z = z * (original_mean / z.mean())
                parts.append(z)
        tensors[f"prompt{index}.hidden"] = torch.cat(parts, dim=1).contiguous()
        tensors[f"prompt{index}.ids"] = torch.tensor(chunks, dtype=torch.float32)
        tensors[f"prompt{index}.weights"] = torch.tensor(weights, dtype=torch.float32)
    out = ROOT / "Tests/Fixtures/models/sd1/weighted_prompt.safetensors"
    save_file(tensors, str(out), metadata={"prompts": json.dumps(PROMPTS),
                                           "generator": "tools/reference/make_prompt_weighting_fixtures.py"})
    print(out, {k: list(v.shape) for k, v in tensors.items()})


if __name__ == "__main__":
    main()
