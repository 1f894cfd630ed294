"""Fixtures for tests/check_imgio.c, made by the references: Pillow for
decoding and resampling, transformers' Pillow-backend image processors for
preprocessing. The C tests only read what this writes.

generate(outdir) writes, into outdir:
  - encoded inputs (PNG in many color types, bit depths and interlacing,
    JPEG in several subsamplings, grayscale, progressive and CMYK, a few
    deliberately broken files and files of formats we refuse);
  - .npy arrays of what the reference gives for them (uint8 HxWx3 for
    decoded and resized images, float32 3xHxW for processor outputs);
  - manifest.txt, one case per line, which check_imgio.c walks:
      decode IMAGE EXPECTED
      resize SOURCE FILTER W H EXPECTED
      preprocess SOURCE EXPECTED key=value...
      size SHORTEST_EDGE W H OUT_H OUT_W
      resize_tv SOURCE FILTER W H EXPECTED

Pillow cannot write 16-bit color, low-bit-depth gray, short palettes or
Adam7 interlacing, so those PNGs are written by the small encoder below;
what they decode to is still whatever Pillow says. The same goes for the
TIFF layouts Pillow does not write: tiles, separate planes, 16-bit color,
associated alpha and subsampled JPEG come from tifffile (with imagecodecs
for its codecs), low bit depths and odd sample layouts from tiff_bytes.

The resize_tv cases are made by torchvision instead: what
v2.functional.resize(antialias=True) gives for a uint8 CHW tensor on
the CPU, the resize of transformers' torchvision-backed ("fast")
processors, with PIL's filter numbers mapped as those processors map
them (NEAREST is NEAREST_EXACT; torchvision has no BOX or HAMMING for
tensors).

In transformers 5 `ViTImageProcessor` and `CLIPImageProcessor` are the
torchvision-backed processors (they fall back to the Pillow ones, with a
warning, when torchvision is missing); the Pillow/NumPy path that older
versions called the "slow" processor is `ViTImageProcessorPil` /
`CLIPImageProcessorPil`, used here explicitly.
"""

import io
import os
import struct
import sys
import warnings
import zlib

import numpy as np
from PIL import Image

SEED = 20240611


# ---------------------------------------------------------------- PNG writer


def _chunk(kind, data):
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def _pack_row(samples, depth):
    """One scanline's samples (1-D ints) as bytes, MSB first for depth < 8."""
    if depth == 16:
        return samples.astype(">u2").tobytes()
    if depth == 8:
        return samples.astype(np.uint8).tobytes()
    per = 8 // depth
    pad = (-len(samples)) % per
    s = np.concatenate([samples, np.zeros(pad, samples.dtype)]).astype(np.uint32)
    s = s.reshape(-1, per)
    v = np.zeros(s.shape[0], np.uint32)
    for i in range(per):
        v = (v << depth) | s[:, i]
    return v.astype(np.uint8).tobytes()


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4),
         (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def png_bytes(a, color_type, depth, interlace=False, plte=None, trns=None,
              ihdr_size=None):
    """a: (h, w) or (h, w, channels) array of samples. Rows use filter type
    0 except every third row, which uses Sub, so libpng's unfiltering runs."""
    a = np.asarray(a)
    if a.ndim == 2:
        a = a[:, :, None]
    h, w, ch = a.shape
    bpp = max(1, ch * depth // 8)

    def rows_of(img):
        out = b""
        for y in range(img.shape[0]):
            raw = _pack_row(img[y].reshape(-1), depth)
            if y % 3 == 2:
                r = np.frombuffer(raw, np.uint8).astype(np.int32)
                sub = r.copy()
                sub[bpp:] = (r[bpp:] - r[:-bpp]) & 0xFF
                out += b"\x01" + sub.astype(np.uint8).tobytes()
            else:
                out += b"\x00" + raw
        return out

    if interlace:
        data = b""
        for x0, y0, dx, dy in ADAM7:
            sub = a[y0::dy, x0::dx]
            if sub.shape[0] and sub.shape[1]:
                data += rows_of(sub)
    else:
        data = rows_of(a)
    iw, ih = ihdr_size if ihdr_size else (w, h)
    out = b"\x89PNG\r\n\x1a\n"
    out += _chunk(b"IHDR", struct.pack(">IIBBBBB", iw, ih, depth, color_type,
                                       0, 0, 1 if interlace else 0))
    if plte is not None:
        out += _chunk(b"PLTE", np.asarray(plte, np.uint8).tobytes())
    if trns is not None:
        out += _chunk(b"tRNS", trns)
    out += _chunk(b"IDAT", zlib.compress(data, 9)) + _chunk(b"IEND", b"")
    return out


# ---------------------------------------------------------------- helpers


def test_image(rng, w, h):
    """Photo-like content: smooth gradients and a disc (so upsampling has
    something to interpolate), hard edges and a patch of noise (so the
    filters' negative lobes overshoot and the clamps are exercised)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 255 * x / max(w - 1, 1)
    g = 255 * y / max(h - 1, 1)
    b = 128 + 100 * np.sin(x / 3.0) * np.cos(y / 5.0)
    img = np.stack([r, g, b], -1)
    disc = (x - w * 0.6) ** 2 + (y - h * 0.4) ** 2 < (min(w, h) * 0.25) ** 2
    img[disc] = [250, 20, 40]
    img[: h // 4, w // 5: w // 5 + max(1, w // 8)] = [0, 0, 0]
    img[h // 2:, : w // 4] = rng.integers(0, 256, (h - h // 2, w // 4, 3))
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def pillow_rgb(data):
    with warnings.catch_warnings():
        # Pillow suggests RGBA for palettes with tRNS; convert("RGB") is
        # exactly what we mean to record.
        warnings.simplefilter("ignore", UserWarning)
        return np.array(Image.open(io.BytesIO(data)).convert("RGB"))


def pil_save(img, fmt, **kw):
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


FILTERS = {"nearest": 0, "lanczos": 1, "bilinear": 2, "bicubic": 3,
           "box": 4, "hamming": 5}


# ---------------------------------------------------------------- cases


def decode_cases(rng):
    """(name, encoded bytes) pairs whose Pillow decoding is the expectation."""
    out = []
    rgb = test_image(rng, 37, 29)
    alpha = rng.integers(0, 256, (29, 37), dtype=np.uint8)
    gray = np.array(Image.fromarray(rgb).convert("L"))

    # Pillow's own encoder, adaptive filters.
    out.append(("png_rgb8.png", pil_save(Image.fromarray(rgb), "PNG")))
    rgba = np.dstack([rgb, alpha])
    out.append(("png_rgba8.png", pil_save(Image.fromarray(rgba), "PNG")))
    out.append(("png_gray8.png", pil_save(Image.fromarray(gray), "PNG")))
    la = Image.fromarray(np.dstack([gray, alpha]), "LA")
    out.append(("png_graya8.png", pil_save(la, "PNG")))

    # Palettes: 8-bit with tRNS (ignored by convert("RGB")), 2-bit, and an
    # index past the end of a short palette (Pillow gives black).
    pal = rng.integers(0, 256, (200, 3))
    idx = rng.integers(0, 200, (29, 37))
    trns = bytes(rng.integers(0, 256, 50, dtype=np.uint8))
    out.append(("png_pal8_trns.png", png_bytes(idx, 3, 8, plte=pal, trns=trns)))
    out.append(("png_pal2.png", png_bytes(rng.integers(0, 4, (29, 37)), 3, 2,
                                          plte=pal[:4])))
    out.append(("png_pal4_short.png",
                png_bytes(rng.integers(0, 16, (29, 37)), 3, 4, plte=pal[:10])))

    # 16 bits: color keeps the high byte; gray is clamped at 255, so most
    # values are kept below 256 to see both sides of the clamp.
    out.append(("png_rgb16.png",
                png_bytes(rng.integers(0, 65536, (29, 37, 3)), 2, 16)))
    out.append(("png_rgba16.png",
                png_bytes(rng.integers(0, 65536, (29, 37, 4)), 6, 16)))
    g16 = rng.integers(0, 256, (29, 37))
    g16[rng.random((29, 37)) < 0.2] = rng.integers(256, 65536)
    out.append(("png_gray16.png", png_bytes(g16, 0, 16)))
    out.append(("png_gray16_trns.png", png_bytes(g16, 0, 16, trns=b"\x00\x10")))
    out.append(("png_graya16.png",
                png_bytes(rng.integers(0, 65536, (29, 37, 2)), 4, 16)))

    # Low bit depths and tRNS on gray and RGB.
    for d in (1, 2, 4):
        out.append((f"png_gray{d}.png",
                    png_bytes(rng.integers(0, 1 << d, (29, 37)), 0, d)))
    out.append(("png_gray8_trns.png", png_bytes(gray, 0, 8, trns=b"\x00\x07")))
    out.append(("png_rgb8_trns.png",
                png_bytes(rgb, 2, 8, trns=b"\x00\x01\x00\x02\x00\x03")))

    # Adam7, including sizes smaller than the 8x8 pattern.
    out.append(("png_interlaced_rgb8.png", png_bytes(rgb, 2, 8, interlace=True)))
    out.append(("png_interlaced_rgba16.png",
                png_bytes(rng.integers(0, 65536, (29, 37, 4)), 6, 16,
                          interlace=True)))
    out.append(("png_interlaced_gray1_5x3.png",
                png_bytes(rng.integers(0, 2, (3, 5)), 0, 1, interlace=True)))
    out.append(("png_interlaced_pal4.png",
                png_bytes(rng.integers(0, 16, (29, 37)), 3, 4, plte=pal[:16],
                          interlace=True)))
    out.append(("png_1x1.png", png_bytes(np.array([[[9, 99, 199]]]), 2, 8)))

    # JPEG: sizes not multiples of the MCU so the edge blocks and the
    # upsampler's edge cases are covered.
    jrgb = Image.fromarray(test_image(rng, 61, 43))
    out.append(("jpg_444.jpg", pil_save(jrgb, "JPEG", quality=92, subsampling=0)))
    out.append(("jpg_422.jpg", pil_save(jrgb, "JPEG", quality=85, subsampling=1)))
    out.append(("jpg_420.jpg", pil_save(jrgb, "JPEG", quality=75, subsampling=2)))
    out.append(("jpg_gray.jpg", pil_save(jrgb.convert("L"), "JPEG", quality=90)))
    out.append(("jpg_progressive.jpg",
                pil_save(Image.fromarray(test_image(rng, 70, 51)), "JPEG",
                         quality=80, progressive=True)))
    out.append(("jpg_progressive_gray.jpg",
                pil_save(jrgb.convert("L"), "JPEG", quality=80,
                         progressive=True)))
    out.append(("jpg_cmyk.jpg", pil_save(jrgb.convert("CMYK"), "JPEG",
                                         quality=90)))
    out.append(("jpg_1x1.jpg", pil_save(Image.new("RGB", (1, 1), (200, 30, 90)),
                                        "JPEG")))
    return out


def webp_cases(rng):
    """WebP, as Pillow's encoder (its own libwebp) writes it: (name, bytes,
    how) with how "decode" (Image.open(...).convert("RGB")), "exif"
    (load_image's exif_transpose first) or "composite" (CLIP's
    convert_to_rgb of the RGBA image). Odd sizes, so the chroma
    upsampling's edges are in every lossy one."""
    out = []
    h, w = 29, 37
    rgb = Image.fromarray(test_image(rng, w, h))
    alpha = rng.integers(0, 256, (h, w), dtype=np.uint8)
    alpha[0, :4] = [0, 255, 1, 254]
    rgba = Image.fromarray(np.dstack([np.asarray(rgb), alpha]))
    out.append(("webp_lossless_rgb.webp", pil_save(rgb, "WEBP", lossless=True),
                "decode"))
    out.append(("webp_lossless_rgba.webp",
                pil_save(rgba, "WEBP", lossless=True, exact=True), "decode"))
    out.append(("webp_lossy_rgb.webp", pil_save(rgb, "WEBP", quality=80),
                "decode"))
    out.append(("webp_lossy_rgba.webp", pil_save(rgba, "WEBP", quality=70),
                "decode"))
    out.append(("webp_lossy_1x1.webp",
                pil_save(Image.new("RGB", (1, 1), (200, 30, 90)), "WEBP"),
                "decode"))
    out.append(("webp_lossy_rgba_composite.webp",
                pil_save(rgba, "WEBP", quality=70), "composite"))
    out.append(("webp_lossless_rgba_composite.webp",
                pil_save(rgba, "WEBP", lossless=True, exact=True),
                "composite"))
    # An animation: the first frame is what is decoded (Pillow's
    # convert("RGB") of a just-opened animated file).
    f2 = Image.fromarray(test_image(rng, w, h))
    out.append(("webp_anim.webp",
                pil_save(rgb, "WEBP", save_all=True, append_images=[f2],
                         duration=100, lossless=True), "decode"))
    out.append(("webp_anim_lossy.webp",
                pil_save(rgb, "WEBP", save_all=True, append_images=[f2],
                         duration=100, quality=75), "decode"))
    # Orientation from the EXIF chunk.
    for o in (3, 6, 8):
        out.append((f"webp_exif{o}.webp",
                    pil_save(rgb, "WEBP", quality=90, exif=exif_of(o)),
                    "exif"))
    return out


def gif_blocks(data):
    """(offset of the first image descriptor, its 10 bytes) in a GIF."""
    flags = data[10]
    i = 13 + ((3 << ((flags & 7) + 1)) if flags & 128 else 0)
    while data[i] == 0x21:  # extensions: label, then sub-blocks
        i += 2
        while data[i]:
            i += data[i] + 1
        i += 1
    assert data[i] == 0x2C
    return i


def gif_moved(data, screen_w, screen_h, left, top):
    """The GIF with its logical screen and its first frame's position
    changed: a frame that does not cover the screen, as animations have."""
    b = bytearray(data)
    b[6:10] = struct.pack("<HH", screen_w, screen_h)
    i = gif_blocks(b)
    b[i + 1:i + 5] = struct.pack("<HH", left, top)
    return bytes(b)


def gif_cases(rng):
    """GIF, written by Pillow: (name, bytes, how) as for webp_cases, plus
    "trns" (transformers 5's do_convert_rgb after load_image: the
    transparency colour painted white)."""
    out = []
    h, w = 29, 37
    rgb = Image.fromarray(test_image(rng, w, h))
    pal = rgb.quantize(200)
    out.append(("gif_pal.gif", pil_save(pal, "GIF"), "decode"))
    out.append(("gif_interlaced.gif", pil_save(pal, "GIF", interlace=True),
                "decode"))
    small = rgb.quantize(4)
    out.append(("gif_pal4.gif", pil_save(small, "GIF"), "decode"))
    gray = Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8))
    out.append(("gif_gray.gif", pil_save(gray, "GIF"), "decode"))
    # A grayscale ramp palette: Pillow opens it as L.
    ramp = Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8), "L")
    out.append(("gif_ramp.gif", pil_save(ramp.convert("P"), "GIF"),
                "decode"))
    trns = pil_save(pal, "GIF", transparency=7)
    out.append(("gif_trns.gif", trns, "decode"))
    out.append(("gif_trns_composite.gif", trns, "composite"))
    out.append(("gif_trns_white.gif", trns, "trns"))
    f2 = Image.fromarray(test_image(rng, w, h)).quantize(100)
    out.append(("gif_anim.gif",
                pil_save(pal, "GIF", save_all=True, append_images=[f2],
                         duration=100), "decode"))
    # The first frame inside a larger screen, with and without a
    # transparent index (the rest is index 0, or the transparent one).
    out.append(("gif_offset.gif", gif_moved(pil_save(pal, "GIF"), 45, 35, 5, 3),
                "decode"))
    moved = gif_moved(trns, 45, 35, 5, 3)
    out.append(("gif_offset_trns.gif", moved, "decode"))
    out.append(("gif_offset_trns_composite.gif", moved, "composite"))
    # A frame past the screen's edge: Pillow grows the image to hold it.
    out.append(("gif_past_screen.gif",
                gif_moved(pil_save(pal, "GIF"), 20, 10, 4, 6), "decode"))
    return out


# ---------------------------------------------------------------- BMP


def bmp_bytes(w, h, bits, data, header=40, compression=0, colors=0,
              palette=None, masks=None, offset=None, topdown=False, gap=b""):
    """A BMP file: the file header, a DIB header of `header` bytes (12:
    OS/2 1.x; 40 to 124: Windows, a negative height when topdown), the
    BI_BITFIELDS masks (R, G, B, A) inside the header from 52 bytes on or
    after a 40-byte one, the palette ((r, g, b) rows, written BGR in 3
    bytes an entry after a 12-byte header, else 4), `gap`, then `data`.
    `offset` replaces the file header's data offset."""
    if header == 12:
        dib = struct.pack("<IHHHH", 12, w, h, 1, bits)
    else:
        dib = struct.pack("<IiiHHIIiiII", header, w, -h if topdown else h, 1,
                          bits, compression, len(data), 2835, 2835, colors, 0)
        if header > 40 and masks is not None:
            dib += struct.pack("<4I", *masks)
        dib = (dib + bytes(header))[:header]
        if header == 40 and masks is not None:
            dib += struct.pack("<3I", *masks[:3])
    pal = b""
    if palette is not None:
        extra = bytes(0 if header == 12 else 1)
        pal = b"".join(bytes([b, g, r]) + extra
                       for r, g, b in np.asarray(palette).tolist())
    start = 14 + len(dib) + len(pal) + len(gap)
    return (b"BM" + struct.pack("<IHHI", start + len(data), 0, 0,
                                start if offset is None else offset)
            + dib + pal + gap + data)


def bmp_rows(rows, topdown=False):
    """Pixel data from stored rows (bytes, top row first): bottom-up
    unless topdown, each row padded to 4 bytes."""
    order = rows if topdown else rows[::-1]
    return b"".join(r + bytes(-len(r) % 4) for r in order)


def bmp_indexed(idx, bits, topdown=False, **kw):
    """A BMP of the (h, w) indices idx, `bits` bits each; kw as for
    bmp_bytes."""
    idx = np.asarray(idx)
    rows = [_pack_row(row, bits) for row in idx]
    return bmp_bytes(idx.shape[1], idx.shape[0], bits, bmp_rows(rows, topdown),
                     topdown=topdown, **kw)


def bmp_rle(idx, rle4):
    """BI_RLE8 or BI_RLE4 data for an (h, w) index image as encoders write
    it: bottom row first, runs of one index, literal runs of 3 or more
    padded to a 16-bit word, an end of line after each row and the end of
    the bitmap."""
    out = bytearray()
    for row in np.asarray(idx)[::-1].tolist():
        x, w = 0, len(row)
        while x < w:
            r = 1
            while x + r < w and r < 255 and row[x + r] == row[x]:
                r += 1
            if r >= 3 or w - x < 3:
                out += bytes([r, row[x] * 17 if rle4 else row[x]])
                x += r
                continue
            e = x
            while e < w and e - x < 255 and not (
                    e + 2 < w and row[e] == row[e + 1] == row[e + 2]):
                e += 1
            lit = row[x:e]
            if len(lit) < 3:
                for v in lit:
                    out += bytes([1, v * 17 if rle4 else v])
            else:
                body = _pack_row(np.array(lit), 4) if rle4 else bytes(lit)
                out += bytes([0, len(lit)]) + body + bytes(len(body) % 2)
            x = e
        out += b"\0\0"
    return bytes(out + b"\0\1")


def runs_image(rng, w, h, n):
    """Indices below n in runs of random lengths, as RLE is meant for,
    with stretches of noise (literal runs)."""
    flat = []
    while len(flat) < w * h:
        if rng.random() < 0.3:
            flat += rng.integers(0, n, int(rng.integers(3, 12))).tolist()
        else:
            flat += [int(rng.integers(0, n))] * int(rng.integers(1, 20))
    return np.array(flat[:w * h]).reshape(h, w)


def bmp_32(rgba, order):
    """32-bit pixel data from an (h, w, 4) RGBA array, the bytes of each
    pixel in `order` (a string of R, G, B, A and X, X written as 0x55)."""
    h, w, _ = rgba.shape
    chan = {"R": 0, "G": 1, "B": 2, "A": 3}
    px = np.full((h, w, 4), 0x55, np.uint8)
    for i, c in enumerate(order):
        if c != "X":
            px[:, :, i] = rgba[:, :, chan[c]]
    return bmp_rows([r.tobytes() for r in px])


# The BI_BITFIELDS masks (R, G, B, A) of each 32-bit byte order Pillow reads.
BMP_MASKS = {"BGRX": (0xFF0000, 0xFF00, 0xFF, 0),
             "XBGR": (0xFF000000, 0xFF0000, 0xFF00, 0),
             "BGXR": (0xFF000000, 0xFF00, 0xFF, 0),
             "ABGR": (0xFF000000, 0xFF0000, 0xFF00, 0xFF),
             "RGBA": (0xFF, 0xFF00, 0xFF0000, 0xFF000000),
             "BGRA": (0xFF0000, 0xFF00, 0xFF, 0xFF000000),
             "BGAR": (0xFF000000, 0xFF00, 0xFF, 0xFF0000)}


def bmp_cases(rng):
    """BMP: (name, bytes, how) as for webp_cases. Pillow writes 1-bit,
    8-bit gray and palette, 24-bit and 32-bit files; the other kinds are
    written here, and what they decode to is still whatever Pillow says,
    its quirks included (each is named where it is made)."""
    out = []
    h, w = 29, 37
    rgb = test_image(rng, w, h)
    alpha = rng.integers(0, 256, (h, w), dtype=np.uint8)
    alpha[0, :4] = [0, 255, 1, 254]
    rgba = np.dstack([rgb, alpha])
    im = Image.fromarray(rgb)

    # Pillow's own: RGB as 24 bits; RGBA as 32-bit BI_RGB, which it reads
    # back as RGB (the fourth byte is not alpha without BI_BITFIELDS);
    # L as 8 bits with the gray ramp for a palette (read back as "L");
    # "1"; palettes of 200 and of 6 colours.
    out.append(("bmp_rgb24.bmp", pil_save(im, "BMP"), "decode"))
    rgba32 = pil_save(Image.fromarray(rgba), "BMP")
    out.append(("bmp_rgba32.bmp", rgba32, "decode"))
    out.append(("bmp_rgba32_composite.bmp", rgba32, "composite"))
    out.append(("bmp_l8.bmp", pil_save(im.convert("L"), "BMP"), "decode"))
    out.append(("bmp_1bit.bmp", pil_save(im.convert("1"), "BMP"), "decode"))
    out.append(("bmp_pal8.bmp", pil_save(im.quantize(200), "BMP"), "decode"))
    out.append(("bmp_pal8_6.bmp", pil_save(im.quantize(6), "BMP"), "decode"))
    out.append(("bmp_rgb24_exif.bmp", pil_save(im, "BMP"), "exif"))

    # OS/2 1.x: 12-byte header, 3-byte palette entries.
    rows24 = [r[:, ::-1].tobytes() for r in rgb]
    out.append(("bmp_os2_rgb24.bmp", bmp_bytes(w, h, 24, bmp_rows(rows24),
                                               header=12), "decode"))
    pal = rng.integers(0, 256, (256, 3))
    idx8 = rng.integers(0, 256, (h, w))
    out.append(("bmp_os2_pal8.bmp",
                bmp_indexed(idx8, 8, header=12, palette=pal), "decode"))
    idx1 = rng.integers(0, 2, (h, w))
    out.append(("bmp_os2_pal1.bmp",
                bmp_indexed(idx1, 1, header=12, palette=pal[:2]), "decode"))

    # Palettes: 4 bits; fewer colours than the indices reach (the rest is
    # black); two colours that are not black and white.
    idx4 = rng.integers(0, 16, (h, w))
    out.append(("bmp_pal4.bmp",
                bmp_indexed(idx4, 4, colors=16, palette=pal[:16]), "decode"))
    out.append(("bmp_pal4_short.bmp",
                bmp_indexed(idx4, 4, colors=5, palette=pal[:5]), "decode"))
    out.append(("bmp_pal8_short.bmp",
                bmp_indexed(idx8, 8, colors=20, palette=pal[:20]), "decode"))
    out.append(("bmp_pal1.bmp",
                bmp_indexed(idx1, 1, colors=2,
                            palette=[[200, 30, 40], [10, 90, 250]]),
                "decode"))
    # Gray-ramp palettes, which Pillow drops: 100 levels in an 8-bit file
    # (mode "L": indices past them are their own gray levels); black and
    # white in an 8-bit file (mode "1": each row is read one bit a pixel);
    # 16 levels in a 4-bit file 4 pixels wide (mode "L": a byte a pixel,
    # which fits a row only that narrow).
    ramp = np.repeat(np.arange(256)[:, None], 3, 1)
    out.append(("bmp_pal8_ramp100.bmp",
                bmp_indexed(idx8, 8, colors=100, palette=ramp[:100]),
                "decode"))
    out.append(("bmp_pal8_bw.bmp",
                bmp_indexed(idx8, 8, colors=2,
                            palette=[[0, 0, 0], [255, 255, 255]]),
                "decode"))
    idx_n = rng.integers(0, 16, (7, 4))
    out.append(("bmp_pal4_ramp16.bmp",
                bmp_indexed(idx_n, 4, colors=16, palette=ramp[:16]), "decode"))

    # 16 bits: 5-5-5 plain and by masks (a V5 header's alpha mask is not
    # read for 16 bits), 5-6-5 by masks after a 40-byte header.
    v16 = rng.integers(0, 65536, (h, w)).astype("<u2")
    v16[0, :32] = np.arange(32) * 0x0421  # every 5-bit level
    rows16 = [r.tobytes() for r in v16]
    out.append(("bmp_rgb16.bmp", bmp_bytes(w, h, 16, bmp_rows(rows16)),
                "decode"))
    out.append(("bmp_rgb16_555_v5.bmp",
                bmp_bytes(w, h, 16, bmp_rows(rows16), header=124,
                          compression=3, masks=(0x7C00, 0x3E0, 0x1F, 0x8000)),
                "decode"))
    v16[1, :32] = np.arange(32) * 0x20  # every 6-bit green level
    rows565 = [r.tobytes() for r in v16]
    out.append(("bmp_rgb16_565.bmp",
                bmp_bytes(w, h, 16, bmp_rows(rows565), compression=3,
                          masks=(0xF800, 0x7E0, 0x1F, 0)), "decode"))
    out.append(("bmp_rgb24_bitfields.bmp",
                bmp_bytes(w, h, 24, bmp_rows(rows24), header=56,
                          compression=3, masks=(0xFF0000, 0xFF00, 0xFF, 0)),
                "decode"))

    # 32 bits by masks: the byte orders with alpha (RGBA in Pillow),
    # decoded and composited on white, and those without. The 40- and
    # 52-byte headers have no alpha mask: ABGR's masks there are XBGR's.
    # No masks at all is BGRA.
    for order, header in [("BGRA", 124), ("RGBA", 108), ("ABGR", 56),
                          ("BGAR", 124)]:
        f = bmp_bytes(w, h, 32, bmp_32(rgba, order), header=header,
                      compression=3, masks=BMP_MASKS[order])
        out.append((f"bmp_{order.lower()}_v{header}.bmp", f, "decode"))
        out.append((f"bmp_{order.lower()}_v{header}_composite.bmp", f,
                    "composite"))
    for order, header in [("XBGR", 40), ("BGXR", 52), ("BGRX", 108)]:
        out.append((f"bmp_{order.lower()}_v{header}.bmp",
                    bmp_bytes(w, h, 32, bmp_32(rgba, order), header=header,
                              compression=3, masks=BMP_MASKS[order]),
                    "decode"))
    out.append(("bmp_abgr_v52.bmp",
                bmp_bytes(w, h, 32, bmp_32(rgba, "ABGR"), header=52,
                          compression=3, masks=BMP_MASKS["ABGR"]),
                "composite"))
    nomask = bmp_bytes(w, h, 32, bmp_32(rgba, "BGRA"), compression=3,
                       masks=(0, 0, 0, 0))
    out.append(("bmp_nomask32.bmp", nomask, "decode"))
    out.append(("bmp_nomask32_composite.bmp", nomask, "composite"))

    # Top-down (negative height), and the other header sizes.
    out.append(("bmp_topdown_rgb24.bmp",
                bmp_bytes(w, h, 24, bmp_rows(rows24, True), topdown=True),
                "decode"))
    out.append(("bmp_topdown_pal4.bmp",
                bmp_indexed(idx4, 4, colors=16, palette=pal[:16],
                            topdown=True),
                "decode"))
    out.append(("bmp_v4_rgb24.bmp",
                bmp_bytes(w, h, 24, bmp_rows(rows24), header=108), "decode"))
    out.append(("bmp_os2v2_pal8.bmp",
                bmp_indexed(idx8, 8, header=64, palette=pal), "decode"))

    # Where the pixels are: the data offset pointing right after the
    # header (Pillow then skips the palette), 0 (they follow the
    # palette), or past a gap.
    out.append(("bmp_offset_header.bmp",
                bmp_indexed(idx8, 8, colors=30, palette=pal[:30], offset=54),
                "decode"))
    out.append(("bmp_offset_zero.bmp",
                bmp_indexed(idx8, 8, colors=30, palette=pal[:30], offset=0),
                "decode"))
    out.append(("bmp_offset_gap.bmp",
                bmp_bytes(w, h, 24, bmp_rows(rows24), gap=b"junk" * 5),
                "decode"))

    # RLE, encoded as encoders encode it, in 8 and 4 bits, bottom-up and
    # top-down; with a gray ramp (mode "L") and black and white (mode
    # "1", where every nonzero index is white); RLE4 data in an 8-bit
    # file (Pillow goes by the compression).
    r8 = runs_image(rng, w, h, 40)
    r4 = runs_image(rng, w, h, 16)
    out.append(("bmp_rle8.bmp",
                bmp_bytes(w, h, 8, bmp_rle(r8, False), compression=1,
                          colors=40, palette=pal[:40]), "decode"))
    out.append(("bmp_rle4.bmp",
                bmp_bytes(w, h, 4, bmp_rle(r4, True), compression=2,
                          colors=16, palette=pal[:16]), "decode"))
    out.append(("bmp_rle8_topdown.bmp",
                bmp_bytes(w, h, 8, bmp_rle(r8[::-1], False), compression=1,
                          colors=40, palette=pal[:40], topdown=True),
                "decode"))
    out.append(("bmp_rle8_gray.bmp",
                bmp_bytes(w, h, 8, bmp_rle(r8, False), compression=1,
                          colors=256, palette=ramp), "decode"))
    out.append(("bmp_rle8_bw.bmp",
                bmp_bytes(w, h, 8, bmp_rle(r8 % 3, False), compression=1,
                          colors=2, palette=[[0, 0, 0], [255, 255, 255]]),
                "decode"))
    out.append(("bmp_rle4_in_8bit.bmp",
                bmp_bytes(w, h, 8, bmp_rle(r4, True), compression=2,
                          colors=16, palette=pal[:16]), "decode"))
    # What encoders do not write, as Pillow's RLE reader takes it: deltas
    # (it skips right + up * width pixels, filled with index 0), an end of
    # line mid-row (index 0 to the row's end), a run longer than what is
    # left of its row (cut), a literal run that goes on into the next row
    # (whose runs are then all dropped until the next end of line), and
    # the end of the bitmap missing, the image being complete.
    for bits, comp in [(8, 1), (4, 2)]:
        lit = (lambda k: bytes([0, k]) + bytes(
            rng.integers(0, 256, (k + 1) // 2 if bits == 4 else k,
                         dtype=np.uint8).tolist()))
        s = bytearray()
        s += bytes([4, 0x35, 0, 2, 3, 1])   # run, delta 3 right 1 up
        s += bytes([3, 0x12]) + b"\0\0"     # run, end of line
        s += bytes([200, 0x47])             # run cut at the row's end
        s += b"\0\0" + lit(6)               # end of line, literal
        s += bytes(len(s) % 2)
        s += bytes([5, 0x09]) + b"\0\0"     # run, end of line
        s += lit(16)                        # literal past the row's end
        s += bytes(len(s) % 2)
        s += bytes([7, 0x66]) + b"\0\0"     # dropped, then end of line
        s += bytes([0, 2, 250, 0])          # delta past the row's end
        s += bytes([9, 0x21]) + lit(5)
        s += bytes(len(s) % 2)
        s += b"\0\0" + (bytes([13, 0x3C]) + b"\0\0") * h  # rows to the end
        out.append((f"bmp_rle{bits}_delta.bmp",
                    bmp_bytes(13, h, bits, bytes(s), compression=comp,
                              palette=pal[:1 << bits]), "decode"))
    # Pillow aligns literal runs to 16-bit words of the file, not of the
    # pixel data: with the data at an odd offset, it skips a byte after a
    # literal run of an even number of indices and none after an odd one,
    # the other way round from the format (which a reader going by the
    # format would misread). Padded here as Pillow reads it.
    off = 14 + 40 + 4 * 40 + 1  # the headers, the palette, a byte's gap
    s = bytearray()
    for y in range(h):
        for k in (3, 4):
            s += bytes([0, k]) + bytes(rng.integers(0, 40, k).tolist())
            s += bytes((off + len(s)) % 2)
        s += bytes([6, y]) + b"\0\0"
    out.append(("bmp_rle8_odd_offset.bmp",
                bmp_bytes(13, h, 8, bytes(s) + b"\0\1", compression=1,
                          colors=40, palette=pal[:40], gap=b"\0"), "decode"))
    return out


def bmp_refused():
    """BMP files Pillow refuses (the generator checks that it does):
    name -> bytes; the tests know what each should give."""
    out = {}
    rows = bmp_rows([bytes(range(9 * 3))] * 4)
    jpeg = pil_save(Image.new("RGB", (9, 4), (200, 30, 90)), "JPEG")
    out["bad_bmp_jpeg.bmp"] = bmp_bytes(9, 4, 0, jpeg, compression=4)
    png = pil_save(Image.new("RGB", (9, 4), (200, 30, 90)), "PNG")
    out["bad_bmp_png.bmp"] = bmp_bytes(9, 4, 0, png, compression=5)
    out["bad_bmp_2bit.bmp"] = bmp_bytes(
        9, 4, 2, bmp_rows([b"\x1b\x1b\x1b"] * 4), colors=4,
        palette=[[9, 9, 9], [90, 90, 90], [160, 0, 0], [0, 0, 200]])
    out["bad_bmp_masks.bmp"] = bmp_bytes(
        9, 4, 16, bmp_rows([bytes(18)] * 4), compression=3,
        masks=(0x7C00, 0x3E0, 0x1E, 0))
    out["bad_bmp_truncated.bmp"] = bmp_bytes(9, 4, 24, rows)[:-40]
    out["bad_bmp_rle_short.bmp"] = bmp_bytes(
        9, 4, 8, bytes([9, 1, 0, 0, 9, 2, 0, 1]), compression=1, colors=3,
        palette=[[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    out["bad_bmp_rle24.bmp"] = bmp_bytes(
        9, 4, 24, bytes([9, 1, 0, 0] * 4 + [0, 1]), compression=1)
    out["bad_bmp_colors.bmp"] = bmp_bytes(9, 4, 8, bmp_rows([bytes(9)] * 4),
                                          colors=70000)
    out["bad_bmp_pal300.bmp"] = bmp_bytes(
        9, 4, 8, bmp_rows([bytes(9)] * 4), colors=300,
        palette=[[i % 7, 100, 200] for i in range(300)])
    out["bad_bmp_os2v2_16.bmp"] = (
        b"BM" + struct.pack("<IHHI", 30 + 36 * 4, 0, 0, 30)
        + struct.pack("<IIIHH", 16, 9, 4, 1, 24) + rows)
    out["bad_bmp_ramp_rows.bmp"] = bmp_bytes(
        8, 4, 4, bmp_rows([bytes(4)] * 4), colors=16,
        palette=[[i, i, i] for i in range(16)])
    out["bad_bmp_bigdim.bmp"] = bmp_bytes(100000, 100000, 24, rows)
    for name, data in out.items():
        try:
            Image.open(io.BytesIO(data)).convert("RGB")
        except Exception:
            continue
        raise AssertionError(f"Pillow decodes {name}")
    return out


# ------------------------------------------------------------------- TIFF


def tiff_bytes(w, h, tags, strips, be=False):
    """A classic TIFF of one directory, written by hand for what neither
    Pillow nor tifffile writes: tags maps tag -> (type, values) (3 SHORT,
    4 LONG, 1 BYTE); strips are the strips' bytes as stored, placed after
    the 8-byte header, the directory last."""
    e = ">" if be else "<"
    size = {1: 1, 3: 2, 4: 4}
    fmt = {1: "B", 3: "H", 4: "I"}
    body = b"".join(strips)
    offs, at = [], 8
    for s in strips:
        offs.append(at)
        at += len(s)
    tags = dict(tags)
    tags.update({256: (4, [w]), 257: (4, [h]), 273: (4, offs),
                 279: (4, [len(s) for s in strips])})
    ifd_at = 8 + len(body) + (len(body) & 1)
    extra_at = ifd_at + 2 + 12 * len(tags) + 4
    entries, extra = b"", b""
    for tag in sorted(tags):
        typ, vals = tags[tag]
        data = struct.pack(e + fmt[typ] * len(vals), *vals)
        if len(data) <= 4:
            field = data.ljust(4, b"\0")
        else:
            field = struct.pack(e + "I", extra_at + len(extra))
            extra += data + b"\0" * (len(data) & 1)
        entries += struct.pack(e + "HHI", tag, typ, len(vals)) + field
    head = (b"MM\0*" if be else b"II*\0") + struct.pack(e + "I", ifd_at)
    return (head + body + b"\0" * (len(body) & 1) +
            struct.pack(e + "H", len(tags)) + entries + b"\0\0\0\0" + extra)


def pack_bits(a, bits):
    """Rows of samples packed MSB first, each row padded to a byte."""
    return b"".join(_pack_row(row.ravel(), bits) for row in a)


def tifffile_bytes(a, **kw):
    import tifffile
    buf = io.BytesIO()
    tifffile.imwrite(buf, a, **kw)
    return buf.getvalue()


def tiff_cases(rng):
    """TIFF: written by Pillow (strips, every compression it writes),
    tifffile (tiles, separate planes, 16-bit color, associated alpha,
    subsampled JPEG) and tiff_bytes (low bit depths, MinIsWhite, fill
    order, extra samples). (name, bytes, how) as for webp_cases; Pillow's
    reading of the bytes is the expectation, whoever wrote them."""
    out = []
    h, w = 29, 37
    rgb = test_image(rng, w, h)
    im = Image.fromarray(rgb)
    alpha = rng.integers(0, 256, (h, w), dtype=np.uint8)
    alpha[:4] = 255
    alpha[4:8] = 0
    rgba = Image.fromarray(np.dstack([rgb, alpha]))
    gray = im.convert("L")
    for comp in ["raw", "tiff_lzw", "tiff_adobe_deflate", "packbits", "jpeg",
                 "lzma", "zstd"]:
        short = comp.replace("tiff_", "").replace("adobe_", "")
        out.append((f"tif_rgb_{short}.tif", pil_save(im, "TIFF",
                                                      compression=comp),
                    "decode"))
    for comp in ["raw", "tiff_lzw", "jpeg"]:
        short = comp.replace("tiff_", "")
        out.append((f"tif_gray_{short}.tif",
                    pil_save(gray, "TIFF", compression=comp), "decode"))
    bw = gray.convert("1")
    for comp in ["raw", "group4", "group3", "tiff_ccitt", "packbits"]:
        short = comp.replace("tiff_", "")
        out.append((f"tif_bilevel_{short}.tif",
                    pil_save(bw, "TIFF", compression=comp), "decode"))
    # MinIsWhite: Pillow inverts the samples it stores.
    for mode, comp in [("1", "raw"), ("1", "group4"), ("L", "raw"),
                       ("L", "tiff_lzw")]:
        short = comp.replace("tiff_", "")
        src = bw if mode == "1" else gray
        out.append((f"tif_miniswhite_{mode.lower()}_{short}.tif",
                    pil_save(src, "TIFF", compression=comp,
                             tiffinfo={262: 0}), "decode"))
    g16 = rng.integers(0, 65536, (h, w), dtype=np.uint16)
    g16[: h // 2] = rng.integers(0, 300, (h // 2, w), dtype=np.uint16)
    for comp in ["raw", "tiff_adobe_deflate"]:
        short = comp.replace("tiff_", "").replace("adobe_", "")
        out.append((f"tif_gray16_{short}.tif",
                    pil_save(Image.fromarray(g16), "TIFF", compression=comp),
                    "decode"))
    out.append(("tif_gray16_be.tif",
                pil_save(Image.frombytes("I;16B", (w, h),
                                         g16.astype(">u2").tobytes()),
                         "TIFF"), "decode"))
    la = Image.fromarray(np.dstack([np.asarray(gray), alpha]), "LA")
    pal = im.quantize(50)
    pa = pal.convert("PA")
    pa.putalpha(Image.fromarray(alpha))
    for name, src in [("la", la), ("pa", pa), ("rgba", rgba)]:
        for comp in ["raw", "tiff_lzw"]:
            short = comp.replace("tiff_", "")
            data = pil_save(src, "TIFF", compression=comp)
            out.append((f"tif_{name}_{short}.tif", data, "decode"))
            out.append((f"tif_{name}_{short}_composite.tif", data,
                        "composite"))
    for comp in ["raw", "tiff_lzw"]:
        short = comp.replace("tiff_", "")
        out.append((f"tif_pal_{short}.tif",
                    pil_save(pal, "TIFF", compression=comp), "decode"))
    cmyk = Image.fromarray(rng.integers(0, 256, (h, w, 4), dtype=np.uint8),
                           "CMYK")
    for comp in ["raw", "tiff_lzw", "jpeg"]:
        short = comp.replace("tiff_", "")
        out.append((f"tif_cmyk_{short}.tif",
                    pil_save(cmyk, "TIFF", compression=comp), "decode"))
    ycc = im.convert("YCbCr")
    for comp in ["jpeg", "tiff_lzw"]:
        short = comp.replace("tiff_", "")
        out.append((f"tif_ycbcr_{short}.tif",
                    pil_save(ycc, "TIFF", compression=comp), "decode"))
    f2 = Image.fromarray(test_image(rng, 20, 15))
    out.append(("tif_multipage.tif",
                pil_save(im, "TIFF", save_all=True, append_images=[f2]),
                "decode"))
    out.append(("tif_multipage_lzw.tif",
                pil_save(im, "TIFF", save_all=True, append_images=[f2],
                         compression="tiff_lzw"), "decode"))
    out.append(("tif_bigtiff.tif", pil_save(im, "TIFF", big_tiff=True),
                "decode"))
    # The Orientation tag: Pillow 13 turns the image as it loads it.
    for o, comp in [(6, "raw"), (3, "tiff_lzw"), (5, "jpeg"), (8, "raw")]:
        ex = Image.Exif()
        ex[274] = o
        short = comp.replace("tiff_", "")
        data = pil_save(im, "TIFF", compression=comp, exif=ex)
        out.append((f"tif_orient{o}_{short}.tif", data, "decode"))
        out.append((f"tif_orient{o}_{short}_exif.tif", data, "exif"))
    xmp = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><rdf:Description '
           b'tiff:Orientation="6"/></rdf:RDF></x:xmpmeta>')
    out.append(("tif_xmp_orient6.tif",
                pil_save(im, "TIFF", tiffinfo={700: xmp}), "decode"))
    out.append(("tif_orient0.tif",
                pil_save(im, "TIFF", tiffinfo={274: 9}), "decode"))
    ycc_o = Image.Exif()
    ycc_o[274] = 6
    out.append(("tif_ycbcr_lzw_orient6.tif",
                pil_save(ycc, "TIFF", compression="tiff_lzw", exif=ycc_o),
                "decode"))

    # tifffile: tiles (with partial tiles at the right and bottom),
    # separate planes, big-endian, predictors, 16-bit color, associated
    # alpha, subsampled YCbCr JPEG.
    a4 = np.dstack([rgb, alpha])
    planes = lambda a: np.moveaxis(a, -1, 0)
    c16 = rng.integers(0, 65536, (h, w, 3), dtype=np.uint16)
    a16 = rng.integers(0, 65536, (h, w, 4), dtype=np.uint16)
    tf = [
        ("tif_tiled_raw", rgb, dict(photometric="rgb", tile=(16, 16))),
        ("tif_tiled_deflate", rgb, dict(photometric="rgb", tile=(16, 16),
                                        compression="zlib")),
        ("tif_tiled_lzw_pred", rgb, dict(photometric="rgb", tile=(16, 32),
                                         compression="lzw", predictor=True)),
        ("tif_tiled_jpeg_ycbcr", rgb, dict(photometric="ycbcr",
                                           tile=(16, 16), compression="jpeg",
                                           subsampling=(2, 2))),
        ("tif_jpeg_ycbcr420", rgb, dict(photometric="ycbcr", rowsperstrip=16,
                                        compression="jpeg",
                                        subsampling=(2, 2))),
        ("tif_jpeg_ycbcr422", rgb, dict(photometric="ycbcr", rowsperstrip=8,
                                        compression="jpeg",
                                        subsampling=(2, 1))),
        ("tif_deflate_old", rgb, dict(photometric="rgb",
                                      compression="deflate")),
        ("tif_lzw_be", rgb, dict(photometric="rgb", compression="lzw",
                                 byteorder=">", rowsperstrip=7)),
        ("tif_planar_raw", planes(rgb), dict(photometric="rgb",
                                             planarconfig="separate",
                                             rowsperstrip=10)),
        ("tif_planar_deflate", planes(rgb), dict(photometric="rgb",
                                                 planarconfig="separate",
                                                 compression="zlib",
                                                 rowsperstrip=10)),
        ("tif_planar_tiled_lzw", planes(rgb), dict(photometric="rgb",
                                                   planarconfig="separate",
                                                   compression="lzw",
                                                   tile=(16, 16))),
        ("tif_planar_rgba_raw", planes(a4), dict(photometric="rgb",
                                                 planarconfig="separate",
                                                 extrasamples=["unassalpha"])),
        ("tif_planar_rgba_assoc", planes(a4), dict(photometric="rgb",
                                                   planarconfig="separate",
                                                   compression="zlib",
                                                   extrasamples=["assocalpha"])),
        ("tif_planar_rgbx_deflate", planes(a4), dict(
            photometric="rgb", planarconfig="separate", compression="zlib",
            extrasamples=["unspecified"])),
        ("tif_planar_rgb16_deflate", planes(c16), dict(
            photometric="rgb", planarconfig="separate", compression="zlib")),
        ("tif_planar_cmyk_raw", planes(np.asarray(cmyk)), dict(
            photometric="separated", planarconfig="separate")),
        ("tif_planar_jpeg", planes(rgb), dict(photometric="rgb",
                                              planarconfig="separate",
                                              compression="jpeg",
                                              rowsperstrip=16)),
        ("tif_rgb16_raw", c16, dict(photometric="rgb")),
        ("tif_rgb16_be_deflate", c16, dict(photometric="rgb",
                                           compression="zlib",
                                           byteorder=">")),
        ("tif_rgba16_lzw", a16, dict(photometric="rgb", compression="lzw",
                                     extrasamples=["unassalpha"])),
        ("tif_rgba16_assoc", a16, dict(photometric="rgb", compression="zlib",
                                       extrasamples=["assocalpha"])),
        ("tif_rgba_assoc_raw", a4, dict(photometric="rgb",
                                        extrasamples=["assocalpha"])),
        ("tif_rgba_assoc_lzw", a4, dict(photometric="rgb", compression="lzw",
                                        extrasamples=["assocalpha"])),
        ("tif_rgbx_raw", a4, dict(photometric="rgb",
                                  extrasamples=["unspecified"])),
        ("tif_cmyk16_deflate", rng.integers(0, 65536, (h, w, 4),
                                            dtype=np.uint16),
         dict(photometric="separated", compression="zlib")),
        ("tif_gray16_tiled_lzw", g16, dict(photometric="minisblack",
                                           compression="lzw", tile=(16, 16))),
    ]
    for name, a, kw in tf:
        data = tifffile_bytes(a, **kw)
        out.append((name + ".tif", data, "decode"))
        if "alpha" in str(kw.get("extrasamples", "")):
            out.append((name + "_composite.tif", data, "composite"))

    # Every alpha with 32 values of associated alpha, divided out (every
    # pair was checked once; these keep the file small).
    v, al = np.meshgrid(np.arange(0, 256, 8) + 3, np.arange(256))
    pre = np.stack([v, v[::-1], (v * 7) % 256, al], -1).astype(np.uint8)
    out.append(("tif_rgba_assoc_all.tif",
                tifffile_bytes(pre, photometric="rgb", compression="zlib",
                               extrasamples=["assocalpha"]), "decode"))
    # Every K with 32 values of C, M and Y.
    cm = np.stack([v, v[::-1], (v * 7) % 256, al], -1).astype(np.uint8)
    out.append(("tif_cmyk_all.tif",
                pil_save(Image.fromarray(cm, "CMYK"), "TIFF",
                         compression="tiff_adobe_deflate"), "decode"))

    # By hand: what Pillow reads but nothing here writes.
    hw, hh = 13, 7
    for bits in [1, 2, 4]:
        s = rng.integers(0, 1 << bits, (hh, hw))
        for photo in [0, 1]:
            for fill in [1, 2]:
                data = pack_bits(s, bits)
                if fill == 2:
                    data = bytes(int(f"{b:08b}"[::-1], 2) for b in data)
                out.append((f"tif_gray{bits}_p{photo}_f{fill}.tif",
                            tiff_bytes(hw, hh, {258: (3, [bits]),
                                                262: (3, [photo]),
                                                266: (3, [fill])}, [data]),
                            "decode"))
        cmap = rng.integers(0, 65536, 3 << bits)
        out.append((f"tif_pal{bits}.tif",
                    tiff_bytes(hw, hh, {258: (3, [bits]), 262: (3, [3]),
                                        320: (3, list(cmap))},
                               [pack_bits(s, bits)]), "decode"))
    s8 = rng.integers(0, 256, (hh, hw, 6), dtype=np.uint8)
    hand = [
        # MinIsWhite 16-bit: Pillow does not invert it.
        ("tif_gray16_miniswhite", {258: (3, [16]), 262: (3, [0])},
         rng.integers(0, 400, (hh, hw)).astype("<u2").tobytes()),
        ("tif_gray8_signed", {258: (3, [8]), 262: (3, [1]), 339: (3, [2])},
         s8[..., 0].tobytes()),
        ("tif_gray8_fill2", {258: (3, [8]), 262: (3, [1]), 266: (3, [2])},
         s8[..., 0].tobytes()),
        ("tif_lx", {258: (3, [8, 8]), 262: (3, [1]), 277: (3, [2]),
                    338: (3, [0])}, s8[..., :2].tobytes()),
        ("tif_px", {258: (3, [8, 8]), 262: (3, [3]), 277: (3, [2]),
                    338: (3, [0]),
                    320: (3, list(rng.integers(0, 65536, 768)))},
         s8[..., :2].tobytes()),
        ("tif_rgb_fill2", {258: (3, [8, 8, 8]), 262: (3, [2]),
                           277: (3, [3]), 266: (3, [2])},
         s8[..., :3].tobytes()),
        ("tif_rgba_noextra", {258: (3, [8] * 4), 262: (3, [2]),
                              277: (3, [4])}, s8[..., :4].tobytes()),
        ("tif_rgbaxx", {258: (3, [8] * 6), 262: (3, [2]), 277: (3, [6]),
                        338: (3, [2, 0, 0])}, s8.tobytes()),
        ("tif_rgbax_assoc", {258: (3, [8] * 5), 262: (3, [2]), 277: (3, [5]),
                             338: (3, [1, 0])}, s8[..., :5].tobytes()),
        ("tif_rgbxx", {258: (3, [8] * 5), 262: (3, [2]), 277: (3, [5]),
                       338: (3, [0, 0])}, s8[..., :5].tobytes()),
        ("tif_cmykx", {258: (3, [8] * 5), 262: (3, [5]), 277: (3, [5]),
                       338: (3, [0])}, s8[..., :5].tobytes()),
        ("tif_bps_once", {258: (3, [8]), 262: (3, [2]), 277: (3, [3])},
         s8[..., :3].tobytes()),
    ]
    for name, tags, data in hand:
        out.append((name + ".tif", tiff_bytes(hw, hh, tags, [data]),
                    "decode"))
    # Big-endian by hand, several strips.
    be16 = rng.integers(0, 65536, (hh, hw, 3), dtype=np.uint16)
    rows = [be16[i:i + 3].astype(">u2").tobytes() for i in range(0, hh, 3)]
    out.append(("tif_rgb16_be_strips.tif",
                tiff_bytes(hw, hh, {258: (3, [16] * 3), 262: (3, [2]),
                                    277: (3, [3]), 278: (3, [3])}, rows,
                           be=True), "decode"))
    # BigTIFF through libtiff's codecs, tiles and an Orientation tag.
    out.append(("tif_bigtiff_lzw_orient6.tif",
                tifffile_bytes(rgb, photometric="rgb", bigtiff=True,
                               compression="lzw",
                               extratags=[(274, "H", 1, 6, True)]),
                "decode"))
    out.append(("tif_bigtiff_tiled.tif",
                tifffile_bytes(rgb, photometric="rgb", bigtiff=True,
                               tile=(16, 16), compression="zlib"), "decode"))
    return out


def tiff_refused(rng):
    """TIFFs that must be refused, with the message check_imgio.c expects:
    kinds Pillow has no mode or codec for, and kinds it reads that we do
    not (listed in the decoder)."""
    h, w = 6, 9
    rgb = test_image(rng, w, h)
    s8 = rgb.tobytes()
    tags = {258: (3, [8] * 3), 262: (3, [2]), 277: (3, [3])}
    out = {}
    for name, comp in [("ojpeg", 6), ("webp", 50001), ("comp12345", 12345)]:
        out[f"bad_tif_{name}.tif"] = tiff_bytes(w, h, {**tags, 259: (3, [comp])},
                                               [s8])
    out["bad_tif_la_assoc.tif"] = tiff_bytes(
        w, h, {258: (3, [8, 8]), 262: (3, [1]), 277: (3, [2]),
               338: (3, [1])}, [rgb[..., :2].tobytes()])
    out["bad_tif_lab.tif"] = pil_save(
        Image.frombytes("LAB", (w, h), s8), "TIFF")
    out["bad_tif_float.tif"] = pil_save(
        Image.fromarray(rng.random((h, w), dtype=np.float32)), "TIFF")
    out["bad_tif_ycbcr_raw.tif"] = pil_save(
        Image.fromarray(rgb).convert("YCbCr"), "TIFF")
    out["bad_tif_planar16_raw.tif"] = tifffile_bytes(
        rng.integers(0, 65536, (3, h, w), dtype=np.uint16),
        photometric="rgb", planarconfig="separate")
    out["bad_tif_nowidth.tif"] = tiff_bytes(w, h, tags, [s8]).replace(
        struct.pack("<HHI", 256, 4, 1), struct.pack("<HHI", 999, 4, 1))
    out["bad_tif_bigdim.tif"] = tiff_bytes(w, h, tags, [s8]).replace(
        struct.pack("<HHII", 256, 4, 1, w), struct.pack("<HHII", 256, 4, 1,
                                                        100000)).replace(
        struct.pack("<HHII", 257, 4, 1, h), struct.pack("<HHII", 257, 4, 1,
                                                        100000))
    # Big-endian BigTIFF, which Pillow cannot open.
    out["bad_tif_bigtiff_be.tif"] = tifffile_bytes(
        rgb, photometric="rgb", bigtiff=True, byteorder=">")
    return out


def heif_bytes(im, fmt, **kw):
    """HEIC by pillow-heif (its own libheif and x265), AVIF by Pillow's own
    AvifImagePlugin (libavif and libaom): the writers of each format that
    a transformers user has, and the readers that are the references."""
    if fmt == "HEIF":
        import pillow_heif
        pillow_heif.register_heif_opener()
    return pil_save(im, fmt, **kw)


def heic_from_array(mode, a, **kw):
    """pillow-heif's own image for what Pillow has no mode for (16-bit
    RGB, written as 10 bits; premultiplied RGBa)."""
    import pillow_heif
    h, w = a.shape[:2]
    im = pillow_heif.from_bytes(mode=mode, size=(w, h), data=a.tobytes())
    buf = io.BytesIO()
    im.save(buf, format="HEIF", **kw)
    return buf.getvalue()


def box_patched(data, kind, payload_at, value):
    """The file with bytes at payload_at into the first `kind` box's payload
    (after its 8-byte header) replaced by value."""
    b = bytearray(data)
    i = b.index(kind) + 4 + payload_at
    b[i:i + len(value)] = value
    return bytes(b)


def heif_cases(rng):
    """HEIC and AVIF: (name, bytes, how) as for webp_cases. Odd sizes
    throughout, so that 4:2:0 chroma has a half block at the edges."""
    h, w = 29, 37
    a = test_image(rng, w, h)
    rgb = Image.fromarray(a)
    alpha = rng.integers(0, 256, (h, w), dtype=np.uint8)
    alpha[0, :4] = [0, 255, 1, 254]
    rgba = Image.fromarray(np.dstack([a, alpha]))
    gray = rgb.convert("L")
    a16 = a.astype(np.uint16) * 257 + rng.integers(0, 257, a.shape,
                                                    dtype=np.uint16)
    out = [
        ("heic_420.heic", heif_bytes(rgb, "HEIF", quality=80), "decode"),
        ("heic_422.heic", heif_bytes(rgb, "HEIF", quality=80, chroma="422"),
         "decode"),
        ("heic_444.heic", heif_bytes(rgb, "HEIF", quality=80, chroma="444"),
         "decode"),
        ("heic_10bit.heic", heic_from_array("RGB;16", a16, quality=80),
         "decode"),
        ("heic_10bit_444.heic",
         heic_from_array("RGB;16", a16, quality=80, chroma="444"), "decode"),
        ("heic_gray.heic", heif_bytes(gray, "HEIF", quality=80), "decode"),
        ("heic_1x1.heic",
         heif_bytes(Image.new("RGB", (1, 1), (200, 30, 90)), "HEIF"),
         "decode"),
    ]
    with_alpha = heif_bytes(rgba, "HEIF", quality=80)
    out.append(("heic_rgba.heic", with_alpha, "decode"))
    out.append(("heic_rgba_composite.heic", with_alpha, "composite"))
    premul = heic_from_array("RGBa", np.dstack([a // 2, alpha | 128]),
                             quality=90, chroma="444")
    out.append(("heic_premul.heic", premul, "decode"))
    out.append(("heic_premul_composite.heic", premul, "composite"))
    # Turned by irot and imir, which pillow-heif writes from the EXIF
    # orientation and libheif applies: the image comes out turned with or
    # without exif_transpose. An even size, and an odd one (there
    # pillow-heif's libheif mirrors 4:2:0 chroma a pixel off).
    even = Image.fromarray(test_image(rng, 64, 48))
    turned = heif_bytes(even, "HEIF", quality=80, exif=exif_of(6))
    out.append(("heic_irot.heic", turned, "decode"))
    out.append(("heic_irot_exif.heic", turned, "exif"))
    out.append(("heic_odd_imir_exif.heic",
                heif_bytes(rgb, "HEIF", quality=80, exif=exif_of(5)), "exif"))
    # EXIF says 6, no irot: neither reference turns it.
    exif_only = box_patched(heif_bytes(rgb, "HEIF", quality=80,
                                       exif=exif_of(6)), b"irot", 0, b"\0")
    out.append(("heic_exif_only_exif.heic", exif_only, "exif"))
    # A grid of 32x32 tiles, as phones write large photos (in 512s).
    grid = Image.fromarray(test_image(rng, 80, 48))
    out.append(("heic_grid.heic", heif_bytes(grid, "HEIF", quality=80,
                                             tile_size=32), "decode"))

    out += [
        ("avif_420.avif", heif_bytes(rgb, "AVIF", quality=80), "decode"),
        ("avif_444.avif", heif_bytes(rgb, "AVIF", quality=80,
                                     subsampling="4:4:4"), "decode"),
        ("avif_limited.avif", heif_bytes(rgb, "AVIF", quality=80,
                                         subsampling="4:4:4",
                                         range="limited"), "decode"),
        ("avif_gray.avif", heif_bytes(gray, "AVIF", quality=80), "decode"),
        ("avif_1x1.avif",
         heif_bytes(Image.new("RGB", (1, 1), (200, 30, 90)), "AVIF"),
         "decode"),
    ]
    with_alpha = heif_bytes(rgba, "AVIF", quality=80, subsampling="4:4:4")
    out.append(("avif_rgba.avif", with_alpha, "decode"))
    out.append(("avif_rgba_composite.avif", with_alpha, "composite"))
    out.append(("avif_premul.avif",
                heif_bytes(rgba, "AVIF", quality=90, subsampling="4:4:4",
                           alpha_premultiplied=True), "decode"))
    # Pillow writes irot and imir from the EXIF orientation, decodes the
    # pixels unturned and reports them as the orientation again.
    for o in (2, 5, 6):
        turned = heif_bytes(rgb, "AVIF", quality=80, subsampling="4:4:4",
                            exif=exif_of(o))
        if o == 6:
            out.append((f"avif_exif{o}.avif", turned, "decode"))
        out.append((f"avif_exif{o}_exif.avif", turned, "exif"))
    return out


# What Debian 12's libheif 1.15.1 (vit's decoder) gives against the
# references on each case above, as measured: the largest difference in
# R, G and B and how many pixels are identical in all three. The YCbCr to
# RGB conversion differs (imgio/heif.c says how); where it is the same,
# the bound is 0. check_imgio.c fails a decode past either number.
HEIF_BOUNDS = {
    "heic_420.heic": ((0, 1, 1), 978),  # of 1073
    "heic_422.heic": ((0, 0, 0), 1073),  # of 1073
    "heic_444.heic": ((0, 0, 0), 1073),  # of 1073
    "heic_10bit.heic": ((2, 2, 2), 130),  # of 1073
    "heic_10bit_444.heic": ((0, 0, 0), 1073),  # of 1073
    "heic_gray.heic": ((0, 0, 0), 1073),  # of 1073
    "heic_1x1.heic": ((0, 1, 0), 0),  # of 1
    "heic_rgba.heic": ((0, 1, 1), 978),  # of 1073
    "heic_rgba_composite.heic": ((0, 1, 1), 1028),  # of 1073
    "heic_premul.heic": ((0, 0, 0), 1073),  # of 1073
    "heic_premul_composite.heic": ((0, 0, 0), 1073),  # of 1073
    "heic_irot.heic": ((1, 1, 1), 2861),  # of 3072
    "heic_irot_exif.heic": ((1, 1, 1), 2861),  # of 3072
    "heic_odd_imir_exif.heic": ((74, 29, 81), 96),  # of 1073
    "heic_exif_only_exif.heic": ((0, 1, 1), 978),  # of 1073
    "heic_grid.heic": ((1, 1, 1), 3532),  # of 3840
    "avif_420.avif": ((74, 29, 82), 3),  # of 1073
    "avif_444.avif": ((1, 1, 1), 527),  # of 1073
    "avif_limited.avif": ((2, 2, 3), 75),  # of 1073
    "avif_gray.avif": ((0, 0, 0), 1073),  # of 1073
    "avif_1x1.avif": ((0, 1, 0), 0),  # of 1
    "avif_rgba.avif": ((1, 1, 1), 534),  # of 1073
    "avif_rgba_composite.avif": ((1, 1, 1), 783),  # of 1073
    "avif_premul.avif": ((5, 6, 8), 209),  # of 1073
    "avif_exif2_exif.avif": ((1, 1, 1), 527),  # of 1073
    "avif_exif5_exif.avif": ((1, 1, 1), 527),  # of 1073
    "avif_exif6.avif": ((1, 1, 1), 527),  # of 1073
    "avif_exif6_exif.avif": ((1, 1, 1), 527),  # of 1073
}


def heif_broken_files(rng):
    """HEIC and AVIF that must be refused: sizes past every limit."""
    small = Image.fromarray(test_image(rng, 16, 8))
    big = struct.pack(">II", 100000, 100000)
    return {
        "bad_heic_bigdim.heic": box_patched(
            heif_bytes(small, "HEIF"), b"ispe", 4, big),
        "bad_avif_bigdim.avif": box_patched(
            heif_bytes(small, "AVIF"), b"ispe", 4,
            struct.pack(">II", 20000, 20000)),
    }


def write_heif_cases(outdir, cases, lines):
    """write_format_cases for HEIC and AVIF: "heif NAME EXPECTED exif=E
    composite=C max=R,G,B same=K", the bound from HEIF_BOUNDS."""
    for name, data, how in cases:
        with open(os.path.join(outdir, name), "wb") as f:
            f.write(data)
        exp = name.rsplit(".", 1)[0] + ".rgb.npy"
        if how == "decode":
            pixels = pillow_rgb(data)
        else:
            pixels = pillow_loaded(data, how == "composite")
        np.save(os.path.join(outdir, exp), pixels)
        if name not in HEIF_BOUNDS:
            raise SystemExit(f"{name}: no measured bound in HEIF_BOUNDS")
        mx, same = HEIF_BOUNDS[name]
        lines.append(f"heif {name} {exp} exif={int(how == 'exif')} "
                     f"composite={int(how == 'composite')} "
                     f"max={','.join(map(str, mx))} same={same}")


def broken_files(rng):
    """Inputs that must be refused; the tests know what each should give."""
    ok = png_bytes(rng.integers(0, 256, (8, 8, 3)), 2, 8)
    out = {}
    # IHDR claims 100000x100000 with a correct CRC; the IDAT is tiny.
    out["bad_bigdim.png"] = png_bytes(rng.integers(0, 256, (1, 1, 3)), 2, 8,
                                      ihdr_size=(100000, 100000))
    out["bad_zero_width.png"] = png_bytes(rng.integers(0, 256, (4, 1, 3)), 2, 8,
                                          ihdr_size=(0, 4))
    bad = bytearray(ok)
    bad[29] ^= 0xFF  # first byte of the IHDR CRC
    out["bad_crc.png"] = bytes(bad)
    # Drawn still, so that the files made after it stay the same.
    rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    # An ISO-BMFF header with an AVIF brand; the rest does not matter.
    out["other.avif"] = struct.pack(">I", 24) + b"ftypavif" + b"\0" * 12
    # A Photoshop header: a format recognized and refused by name.
    out["other.psd"] = b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, 4, 4, 8, 3)
    return out


# ------------------------------------------------------- EXIF orientation


def tiff_blob(entries, big=False, prefix=None, next_ifd=0, extra=b""):
    """A TIFF-structured EXIF block with one directory at offset 8.
    entries: (tag, type, count, value bytes or an int offset); values longer
    than 4 bytes go after the directory, in order. prefix replaces the
    4-byte magic."""
    e = ">" if big else "<"
    head = prefix if prefix is not None else (b"MM\0*" if big else b"II*\0")
    out_of_line = b""
    base = 8 + 2 + 12 * len(entries) + 4
    ifd = struct.pack(e + "H", len(entries))
    for tag, typ, count, val in entries:
        if isinstance(val, int):  # an explicit offset, wherever it points
            ifd += struct.pack(e + "HHII", tag, typ, count, val)
        elif len(val) <= 4:
            ifd += struct.pack(e + "HHI", tag, typ, count) + val.ljust(4, b"\0")
        else:
            ifd += struct.pack(e + "HHII", tag, typ, count,
                               base + len(out_of_line))
            out_of_line += val
    return head + struct.pack(e + "I", 8) + ifd + struct.pack(
        e + "I", next_ifd) + out_of_line + extra


def short(v, big=False):
    return struct.pack(">H" if big else "<H", v)


def exif_of(orientation):
    ex = Image.Exif()
    ex[274] = orientation
    ex[0x010F] = "vit test camera"  # Make: a second tag, out of line
    return ex.tobytes()  # starts with b"Exif\0\0"


def jpeg_with_app1(jpeg, segments):
    """Inserts APP1 segments (payloads) right after SOI."""
    out = jpeg[:2]
    for s in segments:
        out += b"\xff\xe1" + struct.pack(">H", len(s) + 2) + s
    return out + jpeg[2:]


def png_with_chunks(png, before=(), after=()):
    """Inserts chunks (type, data) before the first IDAT and before IEND."""
    i = png.index(b"IDAT") - 4
    j = png.rindex(b"IEND") - 4
    pre = b"".join(_chunk(t, d) for t, d in before)
    post = b"".join(_chunk(t, d) for t, d in after)
    return png[:i] + pre + png[i:j] + post + png[j:]


def pillow_loaded(data, composite=False):
    """What transformers gives: load_image's exif_transpose + convert("RGB"),
    or, with composite, CLIP's convert_to_rgb on the opened image."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        im = Image.open(io.BytesIO(data))
        if composite:
            from transformers.image_transforms import convert_to_rgb
            return np.asarray(convert_to_rgb(im, return_numpy=True))
        from PIL import ImageOps
        try:
            return np.array(ImageOps.exif_transpose(im).convert("RGB"))
        except (SyntaxError, struct.error, ValueError, TypeError):
            # Pillow gives up on metadata it cannot parse, and load_image
            # with it; vit decodes such a file without turning it.
            return np.array(Image.open(io.BytesIO(data)).convert("RGB"))


def pillow_trns_white(data):
    """transformers 5 with do_convert_rgb: load_image's exif_transpose and
    convert("RGB"), which keeps a transparency colour in info, then
    convert_to_rgb, which composites such an image on white."""
    from PIL import ImageOps
    from transformers.image_transforms import convert_to_rgb
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        im = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
        return np.asarray(convert_to_rgb(im.convert("RGB"), return_numpy=True))


XMP = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><rdf:Description '
       b'xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="%d"/>'
       b'</rdf:RDF></x:xmpmeta>')
XMP_ELEM = (b'<x:xmpmeta><tiff:Orientation>%d</tiff:Orientation>'
            b'</x:xmpmeta>')


def exif_cases(rng):
    """(name, bytes) pairs decoded with exif_transpose on; the expectation
    is Pillow's exif_transpose(...).convert("RGB")."""
    out = []
    jsrc = Image.fromarray(test_image(rng, 29, 17))
    psrc = Image.fromarray(test_image(rng, 13, 7))
    for o in range(1, 9):
        out.append((f"exif_jpg_{o}.jpg",
                    pil_save(jsrc, "JPEG", quality=90, exif=exif_of(o))))
        out.append((f"exif_png_{o}.png",
                    pil_save(psrc, "PNG", exif=exif_of(o))))
    plain_j = pil_save(jsrc, "JPEG", quality=90)
    plain_p = pil_save(psrc, "PNG")
    tb = tiff_blob
    # JPEG: big-endian, an orientation split across two APP1 segments, the
    # first of two Orientation entries winning, XMP alone and XMP ignored
    # when EXIF has the tag.
    out.append(("exif_jpg_mm6.jpg", jpeg_with_app1(plain_j, [
        b"Exif\0\0" + tb([(274, 3, 1, short(6, True))], big=True)])))
    blob = b"Exif\0\0" + tb([(0x010F, 2, 40, b"x" * 39 + b"\0"),
                             (274, 3, 3, short(8) + short(1) + short(1))])
    out.append(("exif_jpg_split8.jpg", jpeg_with_app1(plain_j, [
        blob[:30], b"Exif\0\0" + blob[30:]])))
    out.append(("exif_jpg_dup.jpg", jpeg_with_app1(plain_j, [
        b"Exif\0\0" + tb([(274, 3, 1, short(5)), (274, 3, 1, short(3))])])))
    out.append(("exif_jpg_xmp6.jpg", jpeg_with_app1(plain_j, [
        b"http://ns.adobe.com/xap/1.0/\0" + XMP % 6])))
    out.append(("exif_jpg_xmp_elem7.jpg", jpeg_with_app1(plain_j, [
        b"Exif\0\0" + tb([(0x010F, 2, 4, b"abc\0")]),
        b"http://ns.adobe.com/xap/1.0/\0" + XMP_ELEM % 7])))
    out.append(("exif_jpg_exif_over_xmp.jpg", jpeg_with_app1(plain_j, [
        b"http://ns.adobe.com/xap/1.0/\0" + XMP % 6,
        b"Exif\0\0" + tb([(274, 3, 1, short(3))])])))
    # PNG: eXIf after the image data, two eXIf (the last wins), tEXt
    # "exif", zTXt and tEXt raw profiles, iTXt and zTXt... XMP.
    out.append(("exif_png_after_idat.png", png_with_chunks(
        plain_p, after=[(b"eXIf", tb([(274, 3, 1, short(6))]))])))
    out.append(("exif_png_two.png", png_with_chunks(
        plain_p, before=[(b"eXIf", tb([(274, 3, 1, short(2))]))],
        after=[(b"eXIf", tb([(274, 3, 1, short(7))]))])))
    out.append(("exif_png_text_exif.png", png_with_chunks(
        plain_p, before=[(b"tEXt", b"exif\0Exif\0\0" +
                          tb([(274, 3, 1, short(8))]))])))
    raw = b"Exif\0\0" + tb([(274, 4, 1, struct.pack("<I", 6))])
    hexs = raw.hex().encode()
    prof = b"\nexif\n%8d\n" % len(raw) + b"\n".join(
        hexs[i:i + 72] for i in range(0, len(hexs), 72)) + b"\n"
    out.append(("exif_png_rawprofile_z.png", png_with_chunks(
        plain_p, before=[(b"zTXt", b"Raw profile type exif\0\0" +
                          zlib.compress(prof))])))
    out.append(("exif_png_rawprofile_t.png", png_with_chunks(
        plain_p, after=[(b"tEXt", b"Raw profile type exif\0" +
                         prof.replace(b"\n" + hexs[:4], b"\n" + hexs[:2] +
                                      b" " + hexs[2:4]))])))
    out.append(("exif_png_itxt_xmp5.png", png_with_chunks(
        plain_p, before=[(b"iTXt", b"XML:com.adobe.xmp\0\0\0\0\0" +
                          XMP % 5)])))
    out.append(("exif_png_itxt_zxmp3.png", png_with_chunks(
        plain_p, after=[(b"iTXt", b"XML:com.adobe.xmp\0\1\0\0\0" +
                         zlib.compress(XMP % 3))])))
    # Orientation values of every TIFF type Pillow loads, and malformed
    # blocks, each in a PNG eXIf after the image data (where libpng does
    # not look, so only our reader and Pillow's see it).
    le = "<"
    blobs = {
        "byte": tb([(274, 1, 1, b"\x06")]),
        "ascii": tb([(274, 2, 2, b"6\0")]),
        "long": tb([(274, 4, 1, struct.pack(le + "I", 8))]),
        "rational": tb([(274, 5, 1, struct.pack(le + "II", 12, 2))]),
        "rational_frac": tb([(274, 5, 1, struct.pack(le + "II", 13, 2))]),
        "rational_zero": tb([(274, 5, 1, struct.pack(le + "II", 6, 0))]),
        "sbyte": tb([(274, 6, 1, b"\x03")]),
        "undefined": tb([(274, 7, 1, b"\x06")]),
        "sshort": tb([(274, 8, 1, struct.pack(le + "h", 4))]),
        "sshort_neg": tb([(274, 8, 1, struct.pack(le + "h", -6))]),
        "slong": tb([(274, 9, 1, struct.pack(le + "i", 5))]),
        "srational": tb([(274, 10, 1, struct.pack(le + "ii", -14, -2))]),
        "float": tb([(274, 11, 1, struct.pack(le + "f", 6.0))]),
        "float_frac": tb([(274, 11, 1, struct.pack(le + "f", 6.5))]),
        "double": tb([(274, 12, 1, struct.pack(le + "d", 3.0))]),
        "ifd": tb([(274, 13, 1, struct.pack(le + "I", 2))]),
        "long8": tb([(274, 16, 1, struct.pack(le + "Q", 7))]),
        "unknown_type": tb([(274, 99, 1, short(6)), (274, 3, 1, short(3))]),
        "count0": tb([(274, 3, 0, b""), (274, 3, 1, short(8))]),
        "big_value": tb([(274, 4, 1, struct.pack(le + "I", 65536 + 6))]),
        "nine": tb([(274, 3, 1, short(9))]),
        "bad_magic": tb([(274, 3, 1, short(6))], prefix=b"IX*\0"),
        "swapped_magic": tb([(274, 3, 1, short(6))], prefix=b"II\0*"),
        "bigtiff_le": tb([(274, 3, 1, short(6))], prefix=b"II+\0"),
        "short_head": b"II*\0\x08\0",
        "ifd_past_end": b"II*\0\xff\xff\0\0" + short(1) + b"\0" * 12,
        "truncated_ifd": tb([(0x010F, 2, 4, b"abc\0"),
                             (274, 3, 1, short(6))])[:8 + 2 + 12 + 7],
        "entries_cut_later": tb([(274, 3, 1, short(6)),
                                 (0x010F, 2, 4, b"abc\0")])[:8 + 2 + 12 + 3],
        "offline_past_end": tb([(274, 3, 3, short(6) * 3)])[:-2],
        "offline_read_stops": tb([(0x010F, 2, 10, 60),
                                  (274, 3, 1, short(6))]),
        "offline_too_big_skipped": tb([(0x0110, 2, 100000, 0),
                                       (274, 3, 1, short(4))]),
        "offline_total_too_big": tb([(0x0110, 2, 100000, 0),
                                     (274, 3, 3, short(4) * 3)]),
        "empty": b"",
        "double_prefix": b"Exif\0\0" + tb([(274, 3, 1, short(6))]),
    }
    for name, b in blobs.items():
        out.append((f"exif_png_t_{name}.png",
                    png_with_chunks(plain_p, after=[(b"eXIf", b)])))
    # XMP is consulted only when EXIF has no Orientation entry at all.
    out.append(("exif_png_t_byte_blocks_xmp.png", png_with_chunks(
        plain_p, before=[(b"iTXt", b"XML:com.adobe.xmp\0\0\0\0\0" +
                          XMP % 6)],
        after=[(b"eXIf", blobs["byte"])])))
    out.append(("exif_png_t_absent_allows_xmp.png", png_with_chunks(
        plain_p, before=[(b"iTXt", b"XML:com.adobe.xmp\0\0\0\0\0" +
                          XMP % 6)],
        after=[(b"eXIf", tb([(0x010F, 2, 4, b"abc\0")]))])))
    return out


# ------------------------------------------------------ alpha on white


def alpha_cases(rng):
    """(name, bytes) pairs decoded with composite_on_white on; the
    expectation is transformers' convert_to_rgb on the opened image."""
    out = []
    h, w = 19, 23
    rgb = test_image(rng, w, h)
    alpha = rng.integers(0, 256, (h, w), dtype=np.uint8)
    alpha[0, :4] = [0, 255, 1, 254]
    gray = np.array(Image.fromarray(rgb).convert("L"))
    out.append(("alpha_rgba8.png",
                pil_save(Image.fromarray(np.dstack([rgb, alpha])), "PNG")))
    out.append(("alpha_la8.png",
                pil_save(Image.fromarray(np.dstack([gray, alpha]), "LA"),
                         "PNG")))
    # Every (value, alpha) pair once: x is the value, y the alpha.
    v, a = np.meshgrid(np.arange(256), np.arange(256))
    out.append(("alpha_la8_all_pairs.png",
                png_bytes(np.dstack([v, a]), 4, 8)))
    out.append(("alpha_rgba16.png",
                png_bytes(rng.integers(0, 65536, (h, w, 4)), 6, 16)))
    out.append(("alpha_la16.png",
                png_bytes(rng.integers(0, 65536, (h, w, 2)), 4, 16)))
    out.append(("alpha_rgba16_interlaced.png",
                png_bytes(rng.integers(0, 65536, (h, w, 4)), 6, 16,
                          interlace=True)))
    # Palettes: per-entry alpha, one fully transparent entry (Pillow keeps
    # it as an index), indices past the tRNS and past the palette.
    pal = rng.integers(0, 256, (40, 3))
    idx = rng.integers(0, 48, (h, w))
    trns = bytes(rng.integers(0, 256, 30, dtype=np.uint8))
    out.append(("alpha_pal8_trns.png",
                png_bytes(idx, 3, 8, plte=pal, trns=trns)))
    out.append(("alpha_pal8_one_clear.png",
                png_bytes(idx % 40, 3, 8, plte=pal,
                          trns=b"\xff" * 5 + b"\0" + b"\xff" * 3)))
    out.append(("alpha_pal2_trns.png",
                png_bytes(rng.integers(0, 4, (h, w)), 3, 2, plte=pal[:4],
                          trns=b"\x00\x80")))
    # Gray and RGB color keys, matched as Pillow matches them.
    g8 = rng.integers(0, 256, (h, w))
    g8[::3, ::2] = 7
    out.append(("alpha_gray8_trns.png", png_bytes(g8, 0, 8, trns=b"\0\x07")))
    out.append(("alpha_gray8_trns300.png",
                png_bytes(g8, 0, 8, trns=b"\x01\x2c")))
    g1 = rng.integers(0, 2, (h, w))
    out.append(("alpha_gray1_trns.png", png_bytes(g1, 0, 1, trns=b"\0\x01")))
    out.append(("alpha_gray1_trns0.png", png_bytes(g1, 0, 1, trns=b"\0\0")))
    g2 = rng.integers(0, 4, (h, w))
    out.append(("alpha_gray2_trns2.png", png_bytes(g2, 0, 2, trns=b"\0\x02")))
    out.append(("alpha_gray2_trns170.png",
                png_bytes(g2, 0, 2, trns=b"\0\xaa")))
    out.append(("alpha_gray4_trns.png",
                png_bytes(rng.integers(0, 16, (h, w)), 0, 4,
                          trns=b"\0\x11")))
    g16 = rng.integers(0, 300, (h, w))
    g16[::4, ::3] = 16
    g16[1::5, ::2] = 40000
    out.append(("alpha_gray16_trns16.png",
                png_bytes(g16, 0, 16, trns=b"\0\x10")))
    out.append(("alpha_gray16_trns255.png",
                png_bytes(g16, 0, 16, trns=b"\0\xff")))
    out.append(("alpha_gray16_trns300.png",
                png_bytes(g16, 0, 16, trns=b"\x01\x2c")))
    r8 = rgb.copy()
    r8[::4, ::3] = [1, 2, 3]
    out.append(("alpha_rgb8_trns.png",
                png_bytes(r8, 2, 8, trns=b"\0\x01\0\x02\0\x03")))
    # 16-bit RGB: Pillow compares the high byte of each sample with the low
    # byte of the key, so both kinds of near-miss are in the image.
    r16 = rng.integers(0, 65536, (h, w, 3))
    r16[::4, ::3] = [0x3400, 0x7800, 0xbc00]
    r16[2::4, ::3] = [0x1234, 0x5678, 0x9abc]
    out.append(("alpha_rgb16_trns.png",
                png_bytes(r16, 2, 16, trns=b"\x12\x34\x56\x78\x9a\xbc")))
    # No transparency at all: unchanged.
    out.append(("alpha_none_rgb8.png", pil_save(Image.fromarray(rgb), "PNG")))
    out.append(("alpha_none_jpg.jpg",
                pil_save(Image.fromarray(rgb), "JPEG", quality=90)))
    return out


# ------------------------------------------------ more JPEG variants

# JPEGs Pillow cannot write (it maps 4:1:1 to 4:2:0, has no 4:4:0, writes
# CMYK only untransformed and never arithmetic coding), committed as made
# once by a throwaway C program on libjpeg-turbo 2.1.5's compressor: a
# 53x35 synthetic image (gradients, a disc, scattered hard pixels) set up
# with jpeg_set_defaults and quality 88, then
#   jpg_ycck.jpg: input JCS_CMYK, jpeg_set_colorspace(JCS_YCCK), which
#     writes an Adobe marker with transform 2; Y and K sampled 2x2;
#   jpg_411.jpg: Y sampled 4x1, Cb and Cr 1x1 (4:1:1);
#   jpg_440.jpg: Y sampled 1x2, Cb and Cr 1x1 (4:4:0);
#   jpg_arith_progressive.jpg: arith_code = TRUE and
#     jpeg_simple_progression.
# What they decode to is whatever Pillow says, recorded here.
COMMITTED_JPEGS = ["jpg_ycck.jpg", "jpg_411.jpg", "jpg_440.jpg",
                   "jpg_arith_progressive.jpg"]


def jpeg_variant_cases(rng):
    """Restart markers (Pillow writes DRI), in baseline and progressive,
    every few blocks and every row."""
    src = Image.fromarray(test_image(rng, 71, 45))
    return [
        ("jpg_restart_blocks.jpg",
         pil_save(src, "JPEG", quality=85, restart_marker_blocks=3)),
        ("jpg_restart_rows.jpg",
         pil_save(src, "JPEG", quality=85, subsampling=0,
                  restart_marker_rows=1)),
        ("jpg_restart_progressive.jpg",
         pil_save(src, "JPEG", quality=85, progressive=True,
                  restart_marker_blocks=2)),
    ]


def sof_patched(jpeg, marker=None, precision=None):
    """The JPEG with its SOF marker replaced or its sample precision
    changed: the 12-bit and lossless files libjpeg-turbo's 8-bit decoder
    (and so Pillow) refuses."""
    b = bytearray(jpeg)
    i = b.index(b"\xff\xc0")
    if marker is not None:
        b[i + 1] = marker
    if precision is not None:
        b[i + 4] = precision
    return bytes(b)


def resize_cases():
    """(source name, w, h) for every filter."""
    return [
        ("src_a", 32, 24),    # exact 2x down
        ("src_a", 17, 13),    # odd down
        ("src_a", 5, 3),      # strong down: wide kernels
        ("src_a", 63, 47),    # just below 1x
        ("src_a", 90, 70),    # up, non-integer
        ("src_a", 64, 20),    # vertical pass only
        ("src_a", 23, 48),    # horizontal pass only
        ("src_a", 70, 20),    # Pillow 13 runs these two vertical-first
        ("src_a", 50, 9),
        ("src_a", 60, 30),    # and this one horizontal-first
        ("src_col", 3, 20),   # 1x57
        ("src_col", 2, 113),
        ("src_row", 37, 1),   # 500x1
        ("src_row", 7, 3),
        ("src_row", 999, 2),
    ]


def resize_tv_photo_sources(rng):
    """Photo-like sources for the torchvision resize only, with the sizes
    each is resized to: a 640x480 to 224 on its short side, very wide and
    very tall images (wide kernels one way, few taps the other, and one
    side shrunk while the other grows), a tiny one enlarged a lot."""
    return [
        ("src_photo", test_image(rng, 640, 480), [(298, 224)]),
        ("src_wide", test_image(rng, 1000, 33), [(100, 7), (61, 50)]),
        ("src_tall", test_image(rng, 33, 1000), [(7, 100), (50, 61)]),
        ("src_tiny", test_image(rng, 7, 9), [(224, 288)]),
    ]


TV_FILTERS = {"nearest": 0, "lanczos": 1, "bilinear": 2, "bicubic": 3}


def torchvision_resize(a, w, h, fnum):
    """What transformers' TorchvisionBackend.resize does to the HxWx3 uint8
    array a for PIL filter fnum, back as HxWx3 uint8."""
    import torch
    import torchvision.transforms.v2.functional as tvF
    from transformers.image_utils import pil_torch_interpolation_mapping
    t = torch.from_numpy(a).permute(2, 0, 1).contiguous()
    out = tvF.resize(t, [h, w], interpolation=pil_torch_interpolation_mapping[fnum],
                     antialias=True)
    return np.ascontiguousarray(out.permute(1, 2, 0).numpy())


def preprocess_cases():
    """(name, source name, processor) triples."""
    from transformers import CLIPImageProcessorPil, ViTImageProcessorPil
    return [
        # ViT: exact size, bilinear, mean = std = 0.5.
        ("vit_40x36", "src_p", ViTImageProcessorPil(size={"height": 40, "width": 36})),
        ("vit_bicubic_up", "src_q", ViTImageProcessorPil(
            size={"height": 61, "width": 53}, resample=3)),
        # CLIP: shortest edge, bicubic, center crop, CLIP mean/std.
        ("clip_wide", "src_p", CLIPImageProcessorPil(
            size={"shortest_edge": 40}, crop_size={"height": 32, "width": 36})),
        ("clip_tall", "src_q", CLIPImageProcessorPil(
            size={"shortest_edge": 33}, crop_size={"height": 30, "width": 29})),
        # The crop is larger than the resized image: zero padding.
        ("clip_pad", "src_p", CLIPImageProcessorPil(
            size={"shortest_edge": 21}, crop_size={"height": 24, "width": 32})),
        # No resize, odd crop offsets.
        ("clip_noresize", "src_q", CLIPImageProcessorPil(
            do_resize=False, crop_size={"height": 40, "width": 40})),
    ]


def processor_line(p):
    """The processor's settings as the manifest's key=value fields."""
    size = p.size
    se = size.get("shortest_edge") or 0
    fields = {
        "do_resize": int(bool(p.do_resize)),
        "resample": int(p.resample),
        "shortest_edge": se,
        "size_h": 0 if se else size["height"],
        "size_w": 0 if se else size["width"],
        "do_center_crop": int(bool(p.do_center_crop)),
        "crop_h": p.crop_size["height"] if p.do_center_crop else 0,
        "crop_w": p.crop_size["width"] if p.do_center_crop else 0,
        "do_rescale": int(bool(p.do_rescale)),
        "rescale_factor": repr(float(p.rescale_factor)),
        "do_normalize": int(bool(p.do_normalize)),
        "mean": ",".join(repr(float(v)) for v in p.image_mean),
        "std": ",".join(repr(float(v)) for v in p.image_std),
    }
    return " ".join(f"{k}={v}" for k, v in fields.items())


def write_format_cases(outdir, cases, lines):
    """Writes (name, bytes, how) cases and Pillow's pixels for each, adding
    their manifest lines: how is "decode" (Image.open + convert("RGB")),
    "exif" (load_image's exif_transpose first), "composite" (CLIP's
    convert_to_rgb of the opened image) or "trns" (transformers 5's
    do_convert_rgb after load_image)."""
    for name, data, how in cases:
        with open(os.path.join(outdir, name), "wb") as f:
            f.write(data)
        exp = name.rsplit(".", 1)[0] + ".rgb.npy"
        if how == "decode":
            np.save(os.path.join(outdir, exp), pillow_rgb(data))
            lines.append(f"decode {name} {exp}")
        elif how == "trns":
            np.save(os.path.join(outdir, exp), pillow_trns_white(data))
            lines.append(f"decode_ex {name} {exp} exif=1 composite=0 "
                         f"transparency_white=1")
        else:
            np.save(os.path.join(outdir, exp),
                    pillow_loaded(data, how == "composite"))
            lines.append(f"decode_ex {name} {exp} exif={int(how == 'exif')} "
                         f"composite={int(how == 'composite')}")


def generate(outdir: str) -> None:
    rng = np.random.default_rng(SEED)
    os.makedirs(outdir, exist_ok=True)
    lines = []

    for name, data in decode_cases(rng):
        with open(os.path.join(outdir, name), "wb") as f:
            f.write(data)
        exp = name.rsplit(".", 1)[0] + ".rgb.npy"
        np.save(os.path.join(outdir, exp), pillow_rgb(data))
        lines.append(f"decode {name} {exp}")

    # Cases added after the first fixtures draw from their own generator,
    # so that regenerating leaves the earlier files byte-identical.
    rng2 = np.random.default_rng(SEED + 1)
    for name, data in exif_cases(rng2):
        with open(os.path.join(outdir, name), "wb") as f:
            f.write(data)
        exp = name.rsplit(".", 1)[0] + ".rgb.npy"
        np.save(os.path.join(outdir, exp), pillow_loaded(data))
        lines.append(f"decode_ex {name} {exp} exif=1 composite=0")

    for name, data in alpha_cases(rng2):
        with open(os.path.join(outdir, name), "wb") as f:
            f.write(data)
        exp = name.rsplit(".", 1)[0] + ".rgb.npy"
        np.save(os.path.join(outdir, exp), pillow_loaded(data, True))
        lines.append(f"decode_ex {name} {exp} exif=0 composite=1")

    for name, data in jpeg_variant_cases(rng2):
        with open(os.path.join(outdir, name), "wb") as f:
            f.write(data)
        exp = name.rsplit(".", 1)[0] + ".rgb.npy"
        np.save(os.path.join(outdir, exp), pillow_rgb(data))
        lines.append(f"decode {name} {exp}")
    for name in COMMITTED_JPEGS:
        with open(os.path.join(outdir, name), "rb") as f:
            data = f.read()
        exp = name.rsplit(".", 1)[0] + ".rgb.npy"
        np.save(os.path.join(outdir, exp), pillow_rgb(data))
        lines.append(f"decode {name} {exp}")
    base = pil_save(Image.fromarray(test_image(rng2, 16, 8)), "JPEG")
    for name, data in [("bad_jpeg_12bit.jpg", sof_patched(base, precision=12)),
                       ("bad_jpeg_lossless.jpg", sof_patched(base, 0xC3))]:
        with open(os.path.join(outdir, name), "wb") as f:
            f.write(data)

    # WebP, GIF, BMP and TIFF, each from a generator of its own (so the files
    # above stay byte-identical).
    write_format_cases(outdir, webp_cases(np.random.default_rng(SEED + 3)),
                       lines)
    write_format_cases(outdir, gif_cases(np.random.default_rng(SEED + 4)),
                       lines)
    write_format_cases(outdir, bmp_cases(np.random.default_rng(SEED + 5)),
                       lines)
    for name, data in bmp_refused().items():
        with open(os.path.join(outdir, name), "wb") as f:
            f.write(data)
    rng6 = np.random.default_rng(SEED + 6)
    write_format_cases(outdir, tiff_cases(rng6), lines)
    for name, data in tiff_refused(rng6).items():
        with open(os.path.join(outdir, name), "wb") as f:
            f.write(data)
    # HEIC and AVIF, from a generator of their own.
    rng7 = np.random.default_rng(SEED + 7)
    write_heif_cases(outdir, heif_cases(rng7), lines)
    for name, data in heif_broken_files(rng7).items():
        with open(os.path.join(outdir, name), "wb") as f:
            f.write(data)

    for name, data in broken_files(rng).items():
        with open(os.path.join(outdir, name), "wb") as f:
            f.write(data)

    sources = {
        "src_a": test_image(rng, 64, 48),
        "src_col": test_image(rng, 1, 57),
        "src_row": test_image(rng, 500, 1),
        "src_p": test_image(rng, 64, 48),
        "src_q": test_image(rng, 45, 70),
    }
    for name, a in sources.items():
        np.save(os.path.join(outdir, name + ".npy"), a)

    for src, w, h in resize_cases():
        im = Image.fromarray(sources[src])
        for fname, fnum in FILTERS.items():
            exp = f"resize_{src}_{fname}_{w}x{h}.npy"
            np.save(os.path.join(outdir, exp), np.array(im.resize((w, h), fnum)))
            lines.append(f"resize {src}.npy {fnum} {w} {h} {exp}")

    for name, src, proc in preprocess_cases():
        out = proc(Image.fromarray(sources[src]), return_tensors="np")
        px = np.asarray(out["pixel_values"][0], np.float32)
        exp = f"pre_{name}.npy"
        np.save(os.path.join(outdir, exp), px)
        lines.append(f"preprocess {src}.npy {exp} {processor_line(proc)}")

    # The shortest-edge size rule, straight from transformers, on sizes
    # where the float division lands on or next to an integer.
    from transformers.image_transforms import get_resize_output_image_size
    for se, w, h in [(224, 1920, 1080), (224, 1080, 1920), (224, 1500, 1000),
                     (224, 640, 480), (224, 333, 500), (224, 224, 224),
                     (224, 100, 100), (224, 7, 3), (336, 1023, 767),
                     (256, 4000, 3), (224, 225, 224), (33, 45, 70),
                     (40, 64, 48), (21, 64, 48), (384, 1200, 900)]:
        oh, ow = get_resize_output_image_size(
            np.zeros((h, w, 3), np.uint8), se, default_to_square=False,
            input_data_format="channels_last")
        lines.append(f"size {se} {w} {h} {oh} {ow}")

    # torchvision's resize (transformers' fast processors) on the Pillow
    # cases' sources and sizes, then on photo-like sources of its own
    # generator, so that the files above stay byte-identical.
    tv_cases = [(src, sources[src], [(w, h)]) for src, w, h in resize_cases()]
    rng3 = np.random.default_rng(SEED + 2)
    for name, a, sizes in resize_tv_photo_sources(rng3):
        np.save(os.path.join(outdir, name + ".npy"), a)
        tv_cases.append((name, a, sizes))
    for src, a, sizes in tv_cases:
        for w, h in sizes:
            for fname, fnum in TV_FILTERS.items():
                exp = f"resize_tv_{src}_{fname}_{w}x{h}.npy"
                np.save(os.path.join(outdir, exp),
                        torchvision_resize(a, w, h, fnum))
                lines.append(f"resize_tv {src}.npy {fnum} {w} {h} {exp}")

    with open(os.path.join(outdir, "manifest.txt"), "w") as f:
        f.write("# written by tests/gen_fixtures_images.py; one case a line\n")
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    generate(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/images")
