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
what they decode to is still whatever Pillow says.

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
    small = Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8))
    out["other.bmp"] = pil_save(small, "BMP")
    out["other.tif"] = pil_save(small, "TIFF")
    # An ISO-BMFF header with an AVIF brand; the rest does not matter.
    out["other.avif"] = struct.pack(">I", 24) + b"ftypavif" + b"\0" * 12
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

    # WebP and GIF, each from a generator of its own (so the files above
    # stay byte-identical).
    write_format_cases(outdir, webp_cases(np.random.default_rng(SEED + 3)),
                       lines)
    write_format_cases(outdir, gif_cases(np.random.default_rng(SEED + 4)),
                       lines)
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
