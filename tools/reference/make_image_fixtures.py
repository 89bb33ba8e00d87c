#!/usr/bin/env python3
"""Regenerates the committed test fixtures in this directory.

Run with a Python that has Pillow (tested with Pillow 13.0.0):
    python3 make_fixtures.py
Every pixel formula here is repeated in the Swift tests (PNGFixtureTests.swift,
JPEGTestSupport.swift, EXIFOrientationTests.swift, JPEGTests.swift);
change both together. The handwritten PNG writer below (zlib + CRC by hand)
covers what Pillow cannot write: 2/4-bit gray, tRNS on gray/RGB/16-bit RGB,
Adam7 interlacing and text chunks after IDAT. Each such file is read back
with Pillow and compared with the formula, so two independent decoders agree.
"""
import io
import os
import struct
import zlib

from PIL import Image, ImageOps, PngImagePlugin

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "Tests", "Fixtures", "images")


def out(name):
    return os.path.join(HERE, name)


# --------------------------------------------------------------- raw PNG writer
def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def pack_row(samples, bit_depth):
    """samples: list of ints for one (sub)row, already interleaved."""
    if bit_depth == 16:
        return b"".join(struct.pack(">H", v) for v in samples)
    if bit_depth == 8:
        return bytes(samples)
    per_byte = 8 // bit_depth
    out_bytes = bytearray()
    for i in range(0, len(samples), per_byte):
        group = samples[i:i + per_byte]
        b = 0
        for j in range(per_byte):
            v = group[j] if j < len(group) else 0
            b |= v << (8 - bit_depth * (j + 1))
        out_bytes.append(b)
    return bytes(out_bytes)


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def raw_png(width, height, bit_depth, color_type, pixel, channels, interlace=False,
            palette=None, trns=None, before_idat=(), after_idat=()):
    """pixel(x, y) -> tuple of `channels` ints. Filter type 0 on every row."""
    raw = bytearray()
    if not interlace:
        for y in range(height):
            row = [v for x in range(width) for v in pixel(x, y)]
            raw += b"\x00" + pack_row(row, bit_depth)
    else:
        for (x0, y0, dx, dy) in ADAM7:
            xs = list(range(x0, width, dx))
            if not xs:
                continue
            for y in range(y0, height, dy):
                row = [v for x in xs for v in pixel(x, y)]
                raw += b"\x00" + pack_row(row, bit_depth)
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 1 if interlace else 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
    if palette is not None:
        data += chunk(b"PLTE", bytes(v for rgb in palette for v in rgb))
    if trns is not None:
        data += chunk(b"tRNS", trns)
    for kind, body in before_idat:
        data += chunk(kind, body)
    data += chunk(b"IDAT", zlib.compress(bytes(raw), 9))
    for kind, body in after_idat:
        data += chunk(kind, body)
    data += chunk(b"IEND", b"")
    return data


def write(name, data):
    with open(out(name), "wb") as f:
        f.write(data)


def check_with_pillow(name, expected):
    """expected(x, y) -> tuple as Pillow reports it after convert()."""
    im = Image.open(out(name))
    im.load()
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[len(expected(0, 0))]
    im = im.convert(mode)
    for y in range(im.height):
        for x in range(im.width):
            got = im.getpixel((x, y))
            got = got if isinstance(got, tuple) else (got,)
            assert got == expected(x, y), (name, x, y, got, expected(x, y))


W, H = 13, 7     # odd sizes so rows do not fill whole bytes / filter units
IW, IH = 13, 11  # interlaced images: 13x11 leaves some Adam7 passes partial

# 2- and 4-bit gray: sample v expands to v * 85 / v * 17 (bit replication).
write("gray2.png", raw_png(W, H, 2, 0, lambda x, y: ((x + 2 * y) % 4,), 1))
check_with_pillow("gray2.png", lambda x, y: (((x + 2 * y) % 4) * 85,))
write("gray4.png", raw_png(W, H, 4, 0, lambda x, y: ((x + 2 * y) % 16,), 1))
check_with_pillow("gray4.png", lambda x, y: (((x + 2 * y) % 16) * 17,))

# 8-bit gray with tRNS gray=100 -> gray+alpha, alpha 0 exactly where v == 100.
g8 = lambda x, y: ((x * 20 + y * 7) % 256,)
write("gray_trns.png", raw_png(W, H, 8, 0, g8, 1, trns=struct.pack(">H", 100)))
check_with_pillow("gray_trns.png", lambda x, y: (g8(x, y)[0], 0 if g8(x, y)[0] == 100 else 255))

# 8-bit RGB with tRNS (10,20,30) -> RGBA.
rgb8 = lambda x, y: ((10, 20, 30) if (x + y) % 3 == 0 else (x * 19 % 256, y * 23 % 256, x * y * 7 % 256))
write("rgb_trns.png", raw_png(W, H, 8, 2, rgb8, 3, trns=struct.pack(">HHH", 10, 20, 30)))
check_with_pillow("rgb_trns.png", lambda x, y: rgb8(x, y) + ((0,) if rgb8(x, y) == (10, 20, 30) else (255,)))

# 16-bit RGB with tRNS (1000,2000,3000) -> 16-bit RGBA (alpha 0 or 65535). Pillow reduces
# 16-bit RGB to 8 bits, so this one is only checked by the formula in the Swift test.
rgb16 = lambda x, y: ((1000, 2000, 3000) if (x * y) % 4 == 1 else (x * 5000 % 65536, y * 6000 % 65536, 40000 + x + y))
write("rgb16_trns.png", raw_png(W, H, 16, 2, rgb16, 3, trns=struct.pack(">HHH", 1000, 2000, 3000)))

# Adam7 interlaced files.
irgb8 = lambda x, y: (x * 19 % 256, y * 23 % 256, x * y * 7 % 256)
write("interlaced_rgb8.png", raw_png(IW, IH, 8, 2, irgb8, 3, interlace=True))
check_with_pillow("interlaced_rgb8.png", irgb8)
irgba16 = lambda x, y: (x * 5000 % 65536, y * 6000 % 65536, (x + y) * 1234 % 65536, 65535 - x * y * 300)
write("interlaced_rgba16.png", raw_png(IW, IH, 16, 6, irgba16, 4, interlace=True))
igray1 = lambda x, y: ((x ^ y) & 1,)
write("interlaced_gray1.png", raw_png(IW, IH, 1, 0, igray1, 1, interlace=True))
check_with_pillow("interlaced_gray1.png", lambda x, y: (igray1(x, y)[0] * 255,))

# Text chunks: tEXt before IDAT, zTXt (Latin-1), compressed iTXt (UTF-8), tEXt after IDAT.
text_before = [
    (b"tEXt", b"Title\x00Before IDAT"),
    (b"zTXt", b"Comment\x00\x00" + zlib.compress("caf\u00e9 au lait".encode("latin-1"))),
    (b"iTXt", b"parameters\x00\x01\x00\x00\x00" + zlib.compress("a cat \u732b, Steps: 20".encode("utf-8"))),
]
text_after = [(b"tEXt", b"Late\x00after IDAT")]
write("text_chunks.png", raw_png(2, 2, 8, 2, lambda x, y: (x * 255, y * 255, 0), 3,
                                 before_idat=text_before, after_idat=text_after))
im = Image.open(out("text_chunks.png"))
im.load()
assert im.text == {"Title": "Before IDAT", "Comment": "caf\u00e9 au lait",
                   "parameters": "a cat \u732b, Steps: 20", "Late": "after IDAT"}, im.text

# --------------------------------------------------------------- Pillow-written PNGs
# 4-bit palette (Pillow writes <= 16 colours as bit depth 4): index (x + 3y) % 16,
# palette[i] = (16 i, 255 - 16 i, 37 i % 256).
pal = [(16 * i, 255 - 16 * i, 37 * i % 256) for i in range(16)]
p = Image.new("P", (W, H))
p.putpalette([v for c in pal for v in c])
p.putdata([(x + 3 * y) % 16 for y in range(H) for x in range(W)])
p.save(out("palette4.png"))
check_with_pillow("palette4.png", lambda x, y: pal[(x + 3 * y) % 16])

# 2-bit palette with tRNS alphas (0, 128, 255, 64) -> RGBA. index (2x + y) % 4.
pal4 = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)]
alphas = [0, 128, 255, 64]
p = Image.new("P", (W, H))
p.putpalette([v for c in pal4 for v in c])
p.putdata([(2 * x + y) % 4 for y in range(H) for x in range(W)])
p.save(out("palette_trns.png"), transparency=bytes(alphas))
check_with_pillow("palette_trns.png", lambda x, y: pal4[(2 * x + y) % 4] + (alphas[(2 * x + y) % 4],))

# 1-bit gray (Pillow mode "1"): white where (x * y + x) % 3 == 0.
b = Image.new("1", (W, H))
b.putdata([255 if (x * y + x) % 3 == 0 else 0 for y in range(H) for x in range(W)])
b.save(out("gray1.png"))
check_with_pillow("gray1.png", lambda x, y: (255 if (x * y + x) % 3 == 0 else 0,))

# 16-bit gray (Pillow mode "I;16"): x * 1000 + y * 37.
g16 = Image.new("I;16", (W, H))
g16.putdata([x * 1000 + y * 37 for y in range(H) for x in range(W)])
g16.save(out("gray16.png"))
assert Image.open(out("gray16.png")).getpixel((12, 6)) == 12 * 1000 + 6 * 37

# --------------------------------------------------------------- JPEGs
# EXIF orientation set: 6x4 blocks of 8x8 px (48x32), block colour
# (51 bx, 85 by, (40 (bx + by) + 20) % 256), quality 95, no chroma subsampling.
BW, BH, B = 6, 4, 8


def block_colour(bx, by):
    return (51 * bx, 85 * by, (40 * (bx + by) + 20) % 256)


base = Image.new("RGB", (BW * B, BH * B))
base.putdata([block_colour(x // B, y // B) for y in range(BH * B) for x in range(BW * B)])


def exif_payload(orientation, big_endian):
    """APP1 body: Exif\\0\\0 + TIFF header + IFD0 with one SHORT Orientation entry."""
    e = ">" if big_endian else "<"
    tiff = (b"MM" if big_endian else b"II") + struct.pack(e + "HI", 42, 8)
    ifd = struct.pack(e + "H", 1) + struct.pack(e + "HHI", 0x0112, 3, 1) + struct.pack(e + "HH", orientation, 0)
    ifd += struct.pack(e + "I", 0)
    return b"Exif\x00\x00" + tiff + ifd


for k in range(1, 9):
    name = "exif_orientation_%d.jpg" % k
    # Odd orientations use a little-endian ("II") TIFF header, even ones big-endian ("MM").
    base.save(out(name), quality=95, subsampling=0, exif=exif_payload(k, big_endian=(k % 2 == 0)))
    im = Image.open(out(name))
    assert im.getexif().get(0x0112) == k
    ImageOps.exif_transpose(im).save(out("exif_orientation_%d_expected.png" % k))

# Smooth 64x48 RGB gradient: (4x, 5y, 2x + 2y), no wrap-around edges.
grad = Image.new("RGB", (64, 48))
grad.putdata([(4 * x, 5 * y, 2 * x + 2 * y) for y in range(48) for x in range(64)])
grad.save(out("rgb420.jpg"), quality=90)  # Pillow default subsampling 4:2:0
Image.open(out("rgb420.jpg")).convert("RGB").save(out("rgb420_expected.png"))
grad.save(out("progressive.jpg"), quality=90, progressive=True)
Image.open(out("progressive.jpg")).convert("RGB").save(out("progressive_expected.png"))
grad.convert("L").save(out("gray.jpg"), quality=90)
Image.open(out("gray.jpg")).save(out("gray_expected.png"))
# CMYK: Pillow writes Adobe-style inverted CMYK (APP14 Adobe marker); its
# decode + convert("RGB") is the expected result.
base.convert("CMYK").save(out("cmyk.jpg"), quality=95)
cm = Image.open(out("cmyk.jpg"))
assert cm.mode == "CMYK"
cm.convert("RGB").save(out("cmyk_expected.png"))

print("ok")
