#!/usr/bin/env python3
"""Generate reference token ids for the Swift CLIP tokenizer (DarkroomTokenizer).

Writes Tests/Fixtures/tokenizer/clip_tokens.json (under the nearest directory holding Package.swift).
Needs transformers 5.x and open_clip_torch; runs offline (~10 s):

    HF_HUB_OFFLINE=1 python tools/reference/make_tokenizer_fixtures.py [--out PATH]

Reference implementations
-------------------------
* Plain encoding: transformers' CLIPTokenizer (transformers 5.x: the tokenizers-backed
  implementation; its normalizer is NFC + "\\s+" -> " " + lowercase, i.e. no ftfy and no
  html.unescape). It is built OFFLINE from the merges file that ships inside open_clip
  (open_clip/bpe_simple_vocab_16e6.txt.gz): vocab.json and merges.txt are derived from it in a
  temp dir the same way open_clip's SimpleTokenizer derives its vocabulary, then loaded both with
  CLIPTokenizer(vocab_path, merges_path) and with CLIPTokenizer.from_pretrained(dir) (how
  diffusers loads a pipeline's tokenizer/ folder); the two must agree on every prompt.
  open_clip's SimpleTokenizer must agree on "a photo of a cat".
* Prompt weighting: AUTOMATIC1111 stable-diffusion-webui is not installable here, so
  `parse_prompt_attention` and `tokenize_line` below are our own re-implementations, written from
  the algorithm published in A1111's modules/prompt_parser.py (parse_prompt_attention, re_attention,
  re_break) and modules/sd_hijack_clip.py
  (FrozenCLIPEmbedderWithCustomWordsBase.tokenize_line / next_chunk, process_tokens' SD2 padding).
  Textual-inversion embeddings are out of scope (none are ever found).
"""

import argparse
import gzip
import json
import os
import random
import re
import sys
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from open_clip.tokenizer import SimpleTokenizer, bytes_to_unicode, default_bpe  # noqa: E402
import transformers  # noqa: E402
from transformers import CLIPTokenizer  # noqa: E402

def package_root():
    """The nearest directory above this script holding Package.swift (works from tools/ or tools/reference/)."""
    d = os.path.dirname(os.path.abspath(__file__))
    while not os.path.exists(os.path.join(d, "Package.swift")):
        parent = os.path.dirname(d)
        if parent == d:
            raise SystemExit("make_tokenizer_fixtures.py: no Package.swift above " + __file__)
        d = parent
    return d


FIXTURE_RELATIVE = os.path.join("Tests", "Fixtures", "tokenizer", "clip_tokens.json")

N_MERGES = 49152 - 256 - 2  # 48,894 merges are used by CLIP


# ----------------------------------------------------------------------------- vocabulary files

def write_vocab_files(directory):
    """Derive vocab.json + merges.txt from open_clip's bundled merges file."""
    lines = gzip.open(default_bpe()).read().decode("utf-8").split("\n")
    merges = lines[1:N_MERGES + 1]
    assert len(merges) == N_MERGES
    byte_chars = list(bytes_to_unicode().values())
    vocab = byte_chars + [c + "</w>" for c in byte_chars]
    vocab += ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    assert len(vocab) == 49408
    with open(os.path.join(directory, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump({tok: i for i, tok in enumerate(vocab)}, f, ensure_ascii=False)
    with open(os.path.join(directory, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "\n".join(merges) + "\n")


# ----------------------------------------------------------------------------- A1111 port
# Written from the algorithm of A1111 modules/prompt_parser.py::parse_prompt_attention.
# Tokens, tried in this order at each position: \( \) \[ \] \\ (escapes), a lone backslash,
# "(", "[", ":<number>)" (explicit weight), ")", "]", a run of anything else, a lone ":".

ATTENTION_TOKEN = re.compile(
    r"\\[()\[\]\\]"            # escaped bracket or backslash -> the literal character
    r"|\\"                     # a lone backslash -> dropped
    r"|[(\[]"                  # openers
    r"|:([+-]?[.\d]+)\)"       # explicit weight closing a round bracket
    r"|[)\]]"                  # closers
    r"|[^\\()\[\]:]+"          # plain text
    r"|:"                      # a colon that is not a weight
)
BREAK_SPLIT = re.compile(r"\s*\bBREAK\b\s*", re.S)
ROUND_MUL = 1.1
SQUARE_MUL = 1 / 1.1


def parse_prompt_attention(text):
    out = []            # [text, weight] pairs; BREAK markers are ["BREAK", -1]
    open_round = []     # indices into `out` where an unclosed "(" started
    open_square = []

    def scale_from(start, factor):
        for k in range(start, len(out)):
            out[k][1] *= factor

    for m in ATTENTION_TOKEN.finditer(text):
        tok = m.group(0)
        explicit = m.group(1)
        if tok.startswith("\\"):
            out.append([tok[1:], 1.0])
        elif tok == "(":
            open_round.append(len(out))
        elif tok == "[":
            open_square.append(len(out))
        elif explicit is not None and open_round:
            scale_from(open_round.pop(), float(explicit))  # may raise ValueError, as A1111 does
        elif tok == ")" and open_round:
            scale_from(open_round.pop(), ROUND_MUL)
        elif tok == "]" and open_square:
            scale_from(open_square.pop(), SQUARE_MUL)
        else:
            for n, piece in enumerate(BREAK_SPLIT.split(tok)):
                if n > 0:
                    out.append(["BREAK", -1])
                out.append([piece, 1.0])

    # unclosed brackets still apply, from where they opened to the end
    for start in open_round:
        scale_from(start, ROUND_MUL)
    for start in open_square:
        scale_from(start, SQUARE_MUL)

    if not out:
        out = [["", 1.0]]

    merged = [out[0]]
    for item in out[1:]:
        if item[1] == merged[-1][1]:
            merged[-1][0] += item[0]
        else:
            merged.append(item)
    return merged


def tokenize_line(tok, line, pad_token, backtrack=20, chunk_length=75):
    """Our port of A1111 sd_hijack_clip.FrozenCLIPEmbedderWithCustomWordsBase.tokenize_line
    (without textual-inversion embeddings) plus process_tokens' SD2 pad replacement."""
    bos, eos = tok.bos_token_id, tok.eos_token_id
    comma = tok.get_vocab().get(",</w>")
    parsed = parse_prompt_attention(line)
    token_lists = tok([t for t, _ in parsed], truncation=False, add_special_tokens=False)["input_ids"]

    chunks = []
    cur_t, cur_w = [], []
    last_comma = -1

    def flush():
        nonlocal cur_t, cur_w, last_comma
        fill = chunk_length - len(cur_t)
        if fill > 0:
            cur_t = cur_t + [eos] * fill
            cur_w = cur_w + [1.0] * fill
        ids = [bos] + cur_t + [eos]
        ws = [1.0] + cur_w + [1.0]
        if pad_token != eos:  # SD2: everything after the first end token becomes padding
            first_end = ids.index(eos)
            ids = ids[:first_end + 1] + [pad_token] * (len(ids) - first_end - 1)
        chunks.append((ids, ws))
        last_comma = -1
        cur_t, cur_w = [], []

    for ids, (text, weight) in zip(token_lists, parsed):
        if text == "BREAK" and weight == -1:
            flush()
            continue
        for t in ids:
            if t == comma:
                last_comma = len(cur_t)
            elif (backtrack != 0 and len(cur_t) == chunk_length and last_comma != -1
                  and len(cur_t) - last_comma <= backtrack):
                cut = last_comma + 1
                moved_t, moved_w = cur_t[cut:], cur_w[cut:]
                cur_t, cur_w = cur_t[:cut], cur_w[:cut]
                flush()
                cur_t, cur_w = moved_t, moved_w
            if len(cur_t) == chunk_length:
                flush()
            cur_t.append(t)
            cur_w.append(weight)

    if cur_t or not chunks:
        flush()
    return chunks


# ----------------------------------------------------------------------------- prompts

LONG_WORDS = (
    "portrait of an old sailor with a grey beard standing on the deck of a wooden ship during a storm "
    "at sea waves crashing over the rail lightning in the distance dramatic lighting oil painting in the "
    "style of the dutch masters rich colors heavy impasto brushwork golden hour rim light cinematic "
    "composition highly detailed face weathered skin deep wrinkles piercing blue eyes wool coat brass "
    "buttons rope coiled at his feet seagulls overhead dark clouds rain spray foam rolling swell "
    "a lighthouse on a rocky cliff far behind him its beam cutting through the mist while the crew "
    "struggles with the sails and a small dog hides under a barrel near the mast"
).split()
assert len(LONG_WORDS) >= 100
PROMPT_100_WORDS = " ".join(LONG_WORDS[:100])

ENCODE_PROMPTS = [
    "a photo of a cat",
    "A Photo Of A CAT",
    "ALL CAPS PROMPT, HIGHLY DETAILED, 8K UHD",
    "masterpiece, best quality, ultra-detailed!!!, (hdr)...",
    "punctuation runs: ?!?!... --- *** ~~ ,,, ;; ::: /// \\\\ |||",
    "numbers 1234567 and 3.14 and 0.5x and 2024-01-01",
    "don't it's we'll they're I've I'm she'd",
    "'sun 'tis o'clock rock'n'roll 'S 'LL",
    "café naïve résumé Zürich",
    "cafe\u0301 nai\u0308ve \u212bngstr\u00f6m \u212a",
    "東京タワー at night",
    "🐱🔥 cat on fire 👩\u200d👩\u200d👧 👍🏽 🇯🇵",
    "tabs\tand\nnewlines\r\n  multiple   spaces  ",
    "",
    " \t\n ",
    PROMPT_100_WORDS,
    "&amp; &lt;tag&gt; fish &amp; chips",
    "<|endoftext|> in the text",
    "a<|startoftext|>b<|endoftext|>c <|endoftext|><|endoftext|>",
    "<|ENDOFTEXT|> uppercase and <|startoftext|",
    "!<|endoftext|>? x<|endoftext|>",
    "Ελληνικά ΣΟΦΙΑ Москва",
    "İstanbul ǅemal ﬁsh ßtraße",
    "x² ½ Ⅻ ٣٤ ①",
    "user@example.com https://example.com/path?q=1&x=2#frag",
    "snake_case kebab-case CamelCase dot.separated",
    "(parentheses) [brackets] {braces} <angles>",
    "zero\u200bwidth\u200djoiner\u00adsoft",
    "non\u00a0breaking\u3000ideographic\u2003em\u0085nel\u2028ls",
    "mixed 中文 text 한국어 العربية עברית हिन्दी ไทย",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "a,b.c;d:e!f?g",
    "\"quoted\" 'single' `backtick` «guillemets»",
    "control\x00chars\x07and\x1bescape\x7f",
    "trailing apostrophe' and ''double'' quotes'",
    "Ａｂｃ full-width ＡＢＣ １２３",
    "photo of a dog, 4k, trending on artstation, by greg rutkowski",
    "the quick brown fox jumps over the lazy dog " * 3,
    "\U0001F600\U0001F600\U0001F600",
]


def exact_75_prompt(tok):
    """A prompt that encodes to exactly 75 tokens, and one of 76."""
    words = []
    i = 0
    while len(tok(" ".join(words), add_special_tokens=False)["input_ids"]) < 75:
        words.append(LONG_WORDS[i % len(LONG_WORDS)])
        i += 1
    text = " ".join(words)
    n = len(tok(text, add_special_tokens=False)["input_ids"])
    assert n == 75, n
    return [text, text + " sky"]


def random_prompts(count, seed=1234):
    rng = random.Random(seed)
    pool = (
        list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
        + list("     \t\n''''.,;:!?-_()[]{}<>|/\\\"#$%&*+=@^`~")
        + list("éèêëàâäîïôöùûüçñøåæœßÉÀÖÜİıĳǆǅ")
        + list("αβγΣσςΩжЖёЁ")
        + list("東京タワー中文한국어")
        + ["\u0301", "\u0308", "\u200b", "\u00a0", "\u3000", "\u2028", "\u0085", "\ufe0f"]
        + ["²", "½", "Ⅻ", "٣", "①", "𝔸", "🐱", "🔥", "👍🏽", "ﬁ", "Å", "K"]
        + ["<|endoftext|>", "<|startoftext|>", "<|ENDOFTEXT|>", "<|StartOfText|>", "'s", "'ll", "'re", "<|", "|>"]
    )
    out = []
    for _ in range(count):
        n = rng.randint(1, 40)
        out.append("".join(rng.choice(pool) for _ in range(n)))
    return out


def combining_mark_prompts(count, seed=99):
    """Base letters mixed with combining marks whose NFC needs canonical reordering and composition
    (Tibetan vowel signs that decompose into marks of different classes, Hebrew points, Hangul jamo ...)."""
    rng = random.Random(seed)
    marks = list(range(0x300, 0x370)) + [0x0F71, 0x0F72, 0x0F73, 0x0F74, 0x0F75, 0x0F80, 0x0F81, 0x05B0, 0x05B1,
                                           0x05BC, 0x0591, 0x093C, 0x0951, 0x1DC0, 0x20D0, 0x302A, 0x3099, 0x309A,
                                           0x0345, 0x0344, 0x0340, 0x0341, 0x0343]
    bases = [ord(c) for c in "aeiouAEIOUnNcCsSzZyYwWkKgG"] + [0x3B1, 0x3B7, 0x3C9, 0x430, 0x435, 0x1100, 0x1161,
                                                             0x11A8, 0xAC00, 0x304B, 0x30CF, 0x212B, 0x212A, 0x2126,
                                                             0xF900, 0x0915, 0x0928, 0x09C7, 0x09BE, 0x0B47, 0x0B3E]
    out = []
    for _ in range(count):
        n = rng.randint(2, 10)
        out.append("".join(chr(rng.choice(bases if rng.random() < 0.4 else marks)) for _ in range(n)))
    return out


# Every code point of planes 0, 1 and 14 (no surrogates), each in the text "a" + c + c + "!Q" + c, so
# that it meets a letter, itself, punctuation and an uppercase letter. The ids are not stored; per
# block of 256 code points, the FNV-1a 64 hash of the lines "<hex code point> <ids joined by ','>\n".
SWEEP_TEMPLATE = "a{c}{c}!Q{c}"
SWEEP_RANGES = [(0x0000, 0x20000), (0xE0000, 0xE1000)]


def fnv1a64(data, h=0xCBF29CE484222325):
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def unicode_sweep(tok):
    blocks = {}
    for lo, hi in SWEEP_RANGES:
        for start in range(lo, hi, 256):
            cps = [cp for cp in range(start, start + 256) if not (0xD800 <= cp < 0xE000)]
            if not cps:
                continue
            texts = [SWEEP_TEMPLATE.format(c=chr(cp)) for cp in cps]
            ids = tok(texts, add_special_tokens=False)["input_ids"]
            h = 0xCBF29CE484222325
            for cp, row in zip(cps, ids):
                h = fnv1a64(("%X %s\n" % (cp, ",".join(map(str, row)))).encode(), h)
            blocks["%X" % start] = "%016x" % h
    return {"template": SWEEP_TEMPLATE, "ranges": [[lo, hi] for lo, hi in SWEEP_RANGES], "blocks": blocks}


ATTENTION_PROMPTS = [
    "normal text",
    "an (important) word",
    "(unbalanced",
    "\\(literal\\]",
    "(unnecessary)(parens)",
    "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
    "(a:1.5) (b) [c]",
    "[[double down]] ((double up))",
    "((nested (deep:1.2) text))",
    "escape \\\\ backslash \\ lone \\( and \\[ and \\) \\]",
    "unbalanced) close] and [open square",
    "a cat BREAK a dog",
    "BREAK at start and at the end BREAK",
    "xBREAK BREAKy BREAK_ no-BREAK, BREAK,BREAK",
    "(weighted BREAK inside)",
    "colon: not a weight (x: 1.5) (y:+0.75) (z:-1) (w:.5) (v:2.)",
    "(empty:) (:1.2) [a:1.2] a:1.2)",
    "",
    "emoji (🐱:1.4) and café [naïve]",
    "tab\tBREAK\nnewline BREAK\u3000wide",
]

def random_attention_prompts(count, seed=4321):
    """Random mixes of attention syntax; those A1111 would raise on (bad numbers) are dropped."""
    rng = random.Random(seed)
    pool = ["(", ")", "[", "]", ":", "\\", "\\(", "\\]", "1.5", "0.8", ".", "2", "+", "-", "BREAK", " BREAK ",
            " ", "  ", "\t", "\n", "a", "cat", "dog", "_", ",", ", ", "é", "東京", "🐱", "x1.2", ":1.3)", ":.5)", ":-1)"]
    out = []
    while len(out) < count:
        t = "".join(rng.choice(pool) for _ in range(rng.randint(1, 24)))
        try:
            parse_prompt_attention(t)
        except ValueError:
            continue
        out.append(t)
    return out


ATTENTION_RAISES = [
    "(bad weight:1.2.3)",
    "(dot only:.)",
]


def chunk_prompts(tok):
    # A comma-separated tag list that crosses the 75-token boundary with commas just before it.
    tags = []
    i = 0
    while len(tok(", ".join(tags), add_special_tokens=False)["input_ids"]) < 170:
        tags.append(" ".join(LONG_WORDS[i % len(LONG_WORDS):i % len(LONG_WORDS) + 3]))
        i += 3
    comma_list = ", ".join(tags)
    # No commas at all: plain 75-token splits.
    no_commas = " ".join(LONG_WORDS[:100])
    # A comma exactly at token 75 of the first chunk.
    words = []
    k = 0
    while len(tok(" ".join(words), add_special_tokens=False)["input_ids"]) < 74:
        words.append(LONG_WORDS[k % len(LONG_WORDS)])
        k += 1
    base = " ".join(words)
    n = len(tok(base, add_special_tokens=False)["input_ids"])
    comma_at_75 = base + ("," if n == 74 else "") + " after the comma, more words here"
    assert tok(comma_at_75, add_special_tokens=False)["input_ids"][74] == tok.get_vocab()[",</w>"]
    # The chunk fills up 6-20 tokens after the last comma: backtrack 20 moves them, backtrack 5 does not.
    head = " ".join(LONG_WORDS[:60])
    tail_words = LONG_WORDS[60:]
    nh = len(tok(head + ",", add_special_tokens=False)["input_ids"])  # the comma is token nh-1
    assert 5 < 75 - (nh - 1) <= 20, nh
    n_tail = 1
    while len(tok(head + ", " + " ".join(tail_words[:n_tail]), add_special_tokens=False)["input_ids"]) < 90:
        n_tail += 1
    long_tail = head + ", " + " ".join(tail_words[:n_tail])
    # Weighted long prompt with commas near the boundary.
    weighted = "(" + ", ".join(tags[:12]) + ":1.2), [" + ", ".join(tags[12:20]) + "], " + ", ".join(tags[20:])
    return [
        ("comma_list", comma_list, 49407, 20),
        ("comma_list_pad0", comma_list, 0, 20),
        ("comma_list_no_backtrack", comma_list, 49407, 0),
        ("comma_list_backtrack5", comma_list, 49407, 5),
        ("no_commas", no_commas, 49407, 20),
        ("long_tail", long_tail, 49407, 20),
        ("long_tail_pad0", long_tail, 0, 20),
        ("long_tail_backtrack5", long_tail, 49407, 5),
        ("comma_at_75", comma_at_75, 49407, 20),
        ("weighted_long", weighted, 49407, 20),
        ("weighted_long_pad0", weighted, 0, 20),
        ("break", "a red car BREAK a (blue:1.3) sky, clouds", 49407, 20),
        ("break_pad0", "a red car BREAK a (blue:1.3) sky, clouds", 0, 20),
        ("double_break", "one BREAK BREAK two", 49407, 20),
        ("break_inside_parens", "(sunny BREAK day)", 49407, 20),
        ("empty", "", 49407, 20),
        ("empty_pad0", "", 0, 20),
        ("short_weighted", "(a:1.5) (b) [c], \\(d\\)", 49407, 20),
        ("endoftext_in_text_pad0", "a cat <|endoftext|> on a mat", 0, 20),
    ]


# ----------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=None, help="default: <package root>/" + FIXTURE_RELATIVE)
    args = ap.parse_args()
    if args.out is None:
        args.out = os.path.join(package_root(), FIXTURE_RELATIVE)

    with tempfile.TemporaryDirectory() as d:
        write_vocab_files(d)
        tok = CLIPTokenizer(os.path.join(d, "vocab.json"), os.path.join(d, "merges.txt"))
        tok_dir = CLIPTokenizer.from_pretrained(d)
        tok_sd2 = CLIPTokenizer.from_pretrained(d, pad_token="!")  # SD2's tokenizer: pad_token "!" (id 0)

    assert len(tok) == 49408 and tok.bos_token_id == 49406 and tok.eos_token_id == 49407
    assert tok_sd2.pad_token_id == 0
    reference = SimpleTokenizer()
    cat_ids = tok("a photo of a cat", add_special_tokens=False)["input_ids"]
    assert reference.encode("a photo of a cat") == cat_ids == [320, 1125, 539, 320, 2368], cat_ids

    def enc(t, tk=tok):
        return tk(t, add_special_tokens=False, truncation=False)["input_ids"]

    def padded(t, tk):
        return tk(t, padding="max_length", max_length=77, truncation=True)["input_ids"]

    prompts = ENCODE_PROMPTS + exact_75_prompt(tok)
    encode_cases = []
    for t in prompts:
        ids = enc(t)
        assert ids == enc(t, tok_dir), t
        p_eos, p_zero = padded(t, tok), padded(t, tok_sd2)
        assert len(p_eos) == 77 and len(p_zero) == 77
        encode_cases.append({"text": t, "ids": ids, "padded_eos": p_eos, "padded_zero": p_zero})

    random_cases = []
    for t in random_prompts(300):
        ids = enc(t)
        assert ids == enc(t, tok_dir), t
        random_cases.append({"text": t, "ids": ids})

    mark_cases = []
    for t in combining_mark_prompts(300):
        ids = enc(t)
        assert ids == enc(t, tok_dir), t
        mark_cases.append({"text": t, "ids": ids})

    sweep = unicode_sweep(tok)

    attention_cases = [{"text": t, "parsed": parse_prompt_attention(t)} for t in ATTENTION_PROMPTS]
    for t in ATTENTION_RAISES:
        try:
            parse_prompt_attention(t)
        except ValueError:
            pass
        else:
            raise AssertionError(f"expected ValueError (as A1111 raises) for {t!r}")

    attention_random = []
    for t in random_attention_prompts(300):
        chunks = tokenize_line(tok, t, tok.eos_token_id)
        # Stored up to each chunk's first end token; the rest of a chunk is end tokens with weight 1.0.
        cut = [ids.index(tok.eos_token_id) + 1 for ids, _ in chunks]
        for (ids, ws), n in zip(chunks, cut):
            assert all(x == tok.eos_token_id for x in ids[n:]) and all(w == 1.0 for w in ws[n:])
        attention_random.append({"text": t, "parsed": parse_prompt_attention(t),
                                 "chunk_heads": [ids[:n] for (ids, _), n in zip(chunks, cut)],
                                 "weight_heads": [ws[:n] for (_, ws), n in zip(chunks, cut)]})

    # Long random prompts (words, commas, brackets, weights, BREAK) with varied backtrack and padding.
    chunk_random = []
    rng = random.Random(2468)
    while len(chunk_random) < 40:
        pieces = LONG_WORDS + [",", ",", ", ", "(", ")", "[", "]", ":1.2)", ":0.7)", "BREAK", "\\("]
        t = " ".join(rng.choice(pieces) for _ in range(rng.randint(40, 220)))
        try:
            parse_prompt_attention(t)
        except ValueError:
            continue
        pad = rng.choice([tok.eos_token_id, 0])
        backtrack = rng.choice([0, 5, 20, 40])
        chunks = tokenize_line(tok, t, pad, backtrack)
        cut = [ids.index(tok.eos_token_id) + 1 for ids, _ in chunks]
        for (ids, ws), n in zip(chunks, cut):
            assert all(x == pad for x in ids[n:]) and all(w == 1.0 for w in ws[n:])
        chunk_random.append({"text": t, "pad": pad, "backtrack": backtrack,
                             "chunk_heads": [ids[:n] for (ids, _), n in zip(chunks, cut)],
                             "weight_heads": [ws[:n] for (_, ws), n in zip(chunks, cut)]})

    # The docstring examples published with A1111's parse_prompt_attention.
    assert parse_prompt_attention("an (important) word") == [["an ", 1.0], ["important", 1.1], [" word", 1.0]]
    assert parse_prompt_attention("(unbalanced") == [["unbalanced", 1.1]]
    assert parse_prompt_attention("\\(literal\\]") == [["(literal]", 1.0]]
    assert parse_prompt_attention("(unnecessary)(parens)") == [["unnecessaryparens", 1.1]]
    assert parse_prompt_attention("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).") == [
        ["a ", 1.0], ["house", 1.5730000000000004], [" ", 1.1], ["on", 1.0], [" a ", 1.1],
        ["hill", 0.55], [", sun, ", 1.1], ["sky", 1.4641000000000006], [".", 1.1]]

    chunk_cases = []
    for name, text, pad, backtrack in chunk_prompts(tok):
        chunks = tokenize_line(tok, text, pad, backtrack)
        for ids, ws in chunks:
            assert len(ids) == 77 and len(ws) == 77
        chunk_cases.append({
            "name": name, "text": text, "pad": pad, "backtrack": backtrack,
            "token_count": len(enc(text)),
            "chunks": [ids for ids, _ in chunks],
            "weights": [ws for _, ws in chunks],
        })
    # The cases must actually exercise the comma backtrack.
    cl = next(c for c in chunk_cases if c["name"] == "comma_list")
    nb = next(c for c in chunk_cases if c["name"] == "comma_list_no_backtrack")
    assert cl["chunks"] != nb["chunks"], "comma backtrack not exercised"
    lt = next(c for c in chunk_cases if c["name"] == "long_tail")
    comma_pos = lt["chunks"][0].index(tok.get_vocab()[",</w>"])
    assert lt["chunks"][0].index(tok.eos_token_id) == comma_pos + 1 < 70, "long tail not moved"
    lt5 = next(c for c in chunk_cases if c["name"] == "long_tail_backtrack5")
    assert lt5["chunks"][0].index(tok.eos_token_id) == 76, "backtrack 5 should not move the tail"

    fixture = {
        "generator": "tools/reference/make_tokenizer_fixtures.py",
        "transformers_version": transformers.__version__,
        "reference": "transformers CLIPTokenizer (tokenizers backend, no ftfy) from open_clip's bpe_simple_vocab_16e6.txt.gz; "
                     "A1111 parse_prompt_attention / tokenize_line ported in the generator",
        "vocab_size": len(tok),
        "bos": tok.bos_token_id,
        "eos": tok.eos_token_id,
        "comma": tok.get_vocab()[",</w>"],
        "encode": encode_cases,
        "random": random_cases,
        "combining_marks": mark_cases,
        "unicode_sweep": sweep,
        "attention": attention_cases,
        "attention_raises": ATTENTION_RAISES,
        "attention_random": attention_random,
        "chunk_random": chunk_random,
        "chunks": chunk_cases,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(fixture, f, ensure_ascii=True, indent=None, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {args.out}: {len(encode_cases)} encode, {len(random_cases)} random, "
          f"{len(mark_cases)} combining-mark, {len(sweep['blocks'])} sweep blocks, "
          f"{len(attention_cases)} + {len(attention_random)} attention, {len(chunk_cases)} + {len(chunk_random)} chunk cases")


if __name__ == "__main__":
    sys.exit(main())
