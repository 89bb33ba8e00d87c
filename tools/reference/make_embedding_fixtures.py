#!/usr/bin/env python3
"""Textual-inversion embedding fixtures for the tiny sd1 model (text width 4).

    HF_HUB_OFFLINE=1 ~/venv/bin/python tools/reference/make_embedding_fixtures.py

Writes Tests/Fixtures/embeddings/ (everything there is rewritten):

    embeddings/xqzone.safetensors    {"emb_params": [1, 4]}           F32 (diffusers / A1111 safetensors form)
    embeddings/xqztrio.safetensors   {"emb_params": [3, 4]}           F32, a 3-vector embedding
    embeddings/xqzflat.safetensors   {"string_to_param.*": [4]}       F16, flattened A1111 keys, one 1-D vector
    embeddings/xqzpt.pt              torch.save of A1111's dict:      {"string_to_token": {"*": 265},
                                     "string_to_param": {"*": [2, 4] float32, requires_grad}, "name", "step", ...}
    embeddings/xqzhalf.pt            torch.save({"string_to_param": {"*": [2, 4] float16 view with storage
                                     offset 4 and stride (1, 2)}}): a non-contiguous view of a larger storage
    hostile/wide.safetensors         {"emb_params": [1, 8]}: an embedding for a wider text encoder
    hostile/evil.pt                  a torch zip whose pickle calls builtins.print (must be refused, never run)
    hostile/param.pt                 string_to_param holding a torch.nn.Parameter (_rebuild_parameter)
    expected.safetensors             float32 references, named <case>.<role>:
        te<i>.hidden   diffusers: pipe.encode_prompt(prompt) after pipe.load_textual_inversion(file, token=stem)
                       for every embedding, [1, 77, 4] (prompts in the metadata "prompts")
        te<i>.ids      the ids diffusers fed the text encoder (added tokens >= 49408), for reading failures
        long.hidden    A1111's chunking with embeddings (our port of tokenize_line + EmbeddingsWithFixes, below)
                       on a 3-chunk prompt: [1, 231, 4]; long.ids / long.fixes ([chunk, offset, vectors] rows)
        i2i.image      StableDiffusionImg2ImgPipeline on Tests/Fixtures/pipelines/inputs/photo.png, Euler,
                       10 steps, strength 0.6, guidance 7.5, seed 1234, output_type "np", prompt and negative
                       prompt in the metadata ("i2i")

Where diffusers and A1111 agree: both put an n-vector embedding's vectors at consecutive positions where its word
stands. diffusers does it by rewriting the word `name` to `name name_1 … name_{n-1}` (added tokens); A1111
(`sd_hijack_clip.py::tokenize_line`) finds the name's token ids in the prompt's ids and inserts n vectors. The
te* prompts use each name as a standalone word, within one chunk, with no weighting, where the two give the same
input embeddings. They differ elsewhere: diffusers matches an added token inside a longer word
(`xqzonething`), A1111 matches the name's BPE ids (which a word ending the same way can also produce);
diffusers truncates at 77 tokens, A1111 chunks (long.* is from the A1111 port only).
"""
import json
import os
import pickle
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
try:
    import open_clip.tokenizer  # noqa: F401  (make_tokenizer_fixtures imports it; only its parser is used here)
except ImportError:
    import types
    _stub = types.ModuleType("open_clip.tokenizer")
    _stub.SimpleTokenizer = _stub.bytes_to_unicode = _stub.default_bpe = None
    sys.modules["open_clip"] = types.ModuleType("open_clip")
    sys.modules["open_clip.tokenizer"] = _stub
from make_tokenizer_fixtures import parse_prompt_attention  # noqa: E402

ROOT = HERE.parent.parent
MODEL = ROOT / "Tests/Fixtures/models/sd1/diffusers"
OUT = ROOT / "Tests/Fixtures/embeddings"
PHOTO = ROOT / "Tests/Fixtures/pipelines/inputs/photo.png"

TE_PROMPTS = [
    "a photo of xqzone",
    "xqztrio on a table, red",
    "a xqzpt and xqztrio",
    "flat xqzflat painting",
    "xqzhalf xqzone xqztrio",
]
LONG_PROMPT = ("xqztrio portrait, " + ", ".join(f"detail {i}" for i in range(30)) + ", xqzone xqztrio"
               + " BREAK xqzpt, a red fox")
I2I = {"prompt": "a photo of xqztrio", "negative_prompt": "xqzone", "steps": 10, "strength": 0.6,
       "guidance": 7.5, "seed": 1234, "sampler": "euler"}


def write_embeddings(folder: Path) -> dict:
    g = torch.Generator().manual_seed(20261212)
    vec = {}
    (folder / "embeddings").mkdir(parents=True)
    (folder / "hostile").mkdir(parents=True)
    vec["xqzone"] = torch.randn(1, 4, generator=g)
    save_file({"emb_params": vec["xqzone"]}, str(folder / "embeddings/xqzone.safetensors"))
    vec["xqztrio"] = torch.randn(3, 4, generator=g)
    save_file({"emb_params": vec["xqztrio"]}, str(folder / "embeddings/xqztrio.safetensors"))
    flat = torch.randn(4, generator=g).half()
    vec["xqzflat"] = flat.float()[None]
    save_file({"string_to_param.*": flat}, str(folder / "embeddings/xqzflat.safetensors"))
    pt = torch.randn(2, 4, generator=g)
    vec["xqzpt"] = pt.clone()
    pt.requires_grad = True
    torch.save({"string_to_token": {"*": 265}, "string_to_param": {"*": pt}, "name": "xqzpt", "step": 5,
                "sd_checkpoint": None, "sd_checkpoint_name": None}, str(folder / "embeddings/xqzpt.pt"))
    big = torch.randn(12, generator=g).half()
    view = big.as_strided((2, 4), (1, 2), 4)          # elements 4+i+2j of the storage
    vec["xqzhalf"] = view.float().clone()
    torch.save({"string_to_param": {"*": view}, "name": "xqzhalf"}, str(folder / "embeddings/xqzhalf.pt"))
    save_file({"emb_params": torch.randn(1, 8, generator=g)}, str(folder / "hostile/wide.safetensors"))

    class Evil:
        def __reduce__(self):
            return (print, ("this must never run",))
    torch.save({"string_to_param": {"*": Evil()}}, str(folder / "hostile/evil.pt"))
    torch.save({"string_to_param": {"*": torch.nn.Parameter(torch.randn(1, 4, generator=g))}},
               str(folder / "hostile/param.pt"))
    return vec


class EmbeddingsWithFixes(torch.nn.Module):
    """A1111 sd_hijack.EmbeddingsWithFixes: token embeddings, then each fix's vectors written at offset + 1."""
    def __init__(self, wrapped, fixes):
        super().__init__()
        self.wrapped, self.fixes = wrapped, fixes

    def forward(self, input_ids):
        inputs_embeds = self.wrapped(input_ids)
        out = []
        for fixes, tensor in zip(self.fixes, inputs_embeds):
            for offset, emb in fixes:
                n = min(tensor.shape[0] - offset - 1, emb.shape[0])
                tensor = torch.cat([tensor[0:offset + 1], emb[0:n], tensor[offset + 1 + n:]])
            out.append(tensor)
        return torch.stack(out)


def tokenize_line_ti(tok, line, embeddings, backtrack=20, chunk_length=75):
    """Our port of A1111 tokenize_line WITH embeddings (find_embedding_at_position, PromptChunkFix).
    Returns [(ids, weights, fixes)], fixes = [(offset, name)] with offset counted without the start token."""
    bos, eos = tok.bos_token_id, tok.eos_token_id
    comma = tok.get_vocab().get(",</w>")
    lookup = {}
    for name in sorted(embeddings):
        ids = tok([name], add_special_tokens=False)["input_ids"][0]
        lookup.setdefault(ids[0], []).append((ids, name))
        lookup[ids[0]].sort(key=lambda x: len(x[0]), reverse=True)
    parsed = parse_prompt_attention(line)
    token_lists = tok([t for t, _ in parsed], truncation=False, add_special_tokens=False)["input_ids"]
    chunks = []
    cur = {"t": [], "w": [], "f": []}
    last_comma = -1

    def flush():
        nonlocal cur, last_comma
        t, w = cur["t"], cur["w"]
        fill = chunk_length - len(t)
        if fill > 0:
            t, w = t + [eos] * fill, w + [1.0] * fill
        chunks.append(([bos] + t + [eos], [1.0] + w + [1.0], cur["f"]))
        last_comma = -1
        cur = {"t": [], "w": [], "f": []}

    for tokens, (text, weight) in zip(token_lists, parsed):
        if text == "BREAK" and weight == -1:
            flush()
            continue
        position = 0
        while position < len(tokens):
            token = tokens[position]
            if token == comma:
                last_comma = len(cur["t"])
            elif (backtrack != 0 and len(cur["t"]) == chunk_length and last_comma != -1
                  and len(cur["t"]) - last_comma <= backtrack):
                cut = last_comma + 1
                moved = {"t": cur["t"][cut:], "w": cur["w"][cut:], "f": [(o - cut, n) for o, n in cur["f"] if o >= cut]}
                cur["t"], cur["w"] = cur["t"][:cut], cur["w"][:cut]
                cur["f"] = [(o, n) for o, n in cur["f"] if o < cut]
                flush()
                cur = moved
            if len(cur["t"]) == chunk_length:
                flush()
            match = None
            for ids, name in lookup.get(token, []):
                if tokens[position:position + len(ids)] == ids:
                    match = (ids, name)
                    break
            if match is None:
                cur["t"].append(token)
                cur["w"].append(weight)
                position += 1
                continue
            n = embeddings[match[1]].shape[0]
            if len(cur["t"]) + n > chunk_length:
                flush()
            cur["f"].append((len(cur["t"]), match[1]))
            cur["t"] += [0] * n
            cur["w"] += [weight] * n
            position += len(match[0])
    if cur["t"] or not chunks:
        flush()
    return chunks


def main() -> None:
    from diffusers import EulerDiscreteScheduler, StableDiffusionImg2ImgPipeline
    torch.set_num_threads(1)
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    vec = write_embeddings(OUT)
    # The restricted reader's inputs must be what torch.load itself reads back.
    for name in ["xqzpt", "xqzhalf"]:
        loaded = torch.load(str(OUT / f"embeddings/{name}.pt"), weights_only=True)
        assert torch.equal(loaded["string_to_param"]["*"].float(), vec[name])

    pipe = StableDiffusionImg2ImgPipeline.from_pretrained(str(MODEL), safety_checker=None, feature_extractor=None,
                                                         requires_safety_checker=False, torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    vocab = pipe.tokenizer.get_vocab()
    for stem in vec:
        assert stem not in vocab and stem + "</w>" not in vocab, stem
    # The A1111-format .pt files go through diffusers' own loader too (it reads string_to_param["*"]).
    for stem, ext in [("xqzone", "safetensors"), ("xqztrio", "safetensors"), ("xqzflat", None),
                      ("xqzpt", "pt"), ("xqzhalf", "pt")]:
        if ext is None:   # diffusers does not read flattened keys: give it the tensor under emb_params
            pipe.load_textual_inversion({"emb_params": vec[stem][0]}, token=stem)
        else:
            pipe.load_textual_inversion(str(OUT / f"embeddings/{stem}.{ext}"), token=stem)

    tensors = {}
    with torch.no_grad():
        for i, prompt in enumerate(TE_PROMPTS):
            converted = pipe.maybe_convert_prompt(prompt, pipe.tokenizer)
            ids = pipe.tokenizer(converted, padding="max_length", max_length=77, truncation=True,
                                 return_tensors="pt").input_ids
            hidden, _ = pipe.encode_prompt(prompt, "cpu", 1, do_classifier_free_guidance=False)
            tensors[f"te{i}.hidden"] = hidden.float().contiguous()
            tensors[f"te{i}.ids"] = ids.float()
        # A1111 port on a long prompt: its own text encoder (the embeddings' added rows are not used).
        from transformers import CLIPTextModel, CLIPTokenizer
        tok = CLIPTokenizer.from_pretrained(str(MODEL / "tokenizer"))
        te = CLIPTextModel.from_pretrained(str(MODEL / "text_encoder"), dtype=torch.float32).eval()
        chunks = tokenize_line_ti(tok, LONG_PROMPT, vec)
        parts, fix_rows = [], []
        wrapped = te.embeddings.token_embedding
        for c, (ids, _, fixes) in enumerate(chunks):
            te.embeddings.token_embedding = EmbeddingsWithFixes(wrapped, [[(o, vec[n]) for o, n in fixes]])
            parts.append(te(torch.tensor([ids])).last_hidden_state)
            fix_rows += [[c, o + 1, vec[n].shape[0]] for o, n in fixes]
        te.embeddings.token_embedding = wrapped
        tensors["long.hidden"] = torch.cat(parts, dim=1).contiguous()
        tensors["long.ids"] = torch.tensor([ids for ids, _, _ in chunks], dtype=torch.float32)
        tensors["long.fixes"] = torch.tensor(fix_rows, dtype=torch.float32)

    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    out = pipe(prompt=I2I["prompt"], negative_prompt=I2I["negative_prompt"], image=Image.open(PHOTO).convert("RGB"),
               num_inference_steps=I2I["steps"], strength=I2I["strength"], guidance_scale=I2I["guidance"],
               generator=torch.Generator("cpu").manual_seed(I2I["seed"]), output_type="np").images
    tensors["i2i.image"] = torch.from_numpy(out[0]).float().contiguous()

    ordered = {k: tensors[k] for k in sorted(tensors)}
    save_file(ordered, str(OUT / "expected.safetensors"), metadata={
        "generator": "tools/reference/make_embedding_fixtures.py", "prompts": json.dumps(TE_PROMPTS),
        "long_prompt": LONG_PROMPT, "i2i": json.dumps(I2I)})
    print({k: list(v.shape) for k, v in ordered.items()})
    print("long fixes", tensors["long.fixes"].tolist())
    for i in range(len(TE_PROMPTS)):
        print(TE_PROMPTS[i], [int(x) for x in tensors[f"te{i}.ids"][0][:12]])


if __name__ == "__main__":
    main()
