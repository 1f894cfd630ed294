#!/usr/bin/env python3
"""Hub layouts: every form of preprocessor_config.json that vit reads, each
in a checkpoint directory as the model hub has them, with non-square photos
and what transformers makes of them through both of its image processors.

  hub/photos/           photos as people have them: landscape and portrait
                        JPEGs, 33x1000 and 1000x33, 7x9, a palette PNG with
                        a transparent entry, a gray PNG with a transparency
                        key, an RGBA PNG, a JPEG stored sideways (EXIF 6)
  hub/FORM/             config.json and model.safetensors (links to a tiny
                        model of the other fixtures) and a
                        preprocessor_config.json written in the form, as
                        the hub's files are (e.g. openai/clip-vit-base-patch32
                        and laion/CLIP-ViT-B-32-laion2B-s34B-b79K ship
                        `"size": 224, "crop_size": 224` and a
                        CLIPFeatureExtractor type), plus for each backend B
                        (pil, torchvision) that transformers runs on it:
    ref_pixels_B.npy    (N, 3, H, W) what AutoImageProcessor(backend=B)
                        makes of the photos opened with load_image
    ref_out_B.npy       (N, L) the model's logits, or (N, E) CLIP's
                        get_image_features, on those pixels
  hub/manifest.json     the photos, the forms (base model, output kind, and
                        per backend the reference files or transformers'
                        error), and the configurations transformers
                        refuses, with their base model

Run it from the repository root (tests/gen_fixtures.py runs it too):

    python3 tests/gen_fixtures_hub.py
"""
import io
import json
import os
import shutil
import sys

import numpy as np
import torch
from PIL import Image, ImageDraw

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures", "hub")

OPENAI_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_STD = [0.26862954, 0.26130258, 0.27577711]
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def photo(w, h, seed):
    """A photo-like RGB image: gradients, two shapes and noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([255 * x / max(w - 1, 1), 255 * y / max(h - 1, 1),
                    128 + 100 * np.sin((x + y) / 9.0)], -1)
    img += rng.normal(0, 10, img.shape)
    im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(im)
    d.ellipse((w // 5, h // 6, w // 2, h // 2), fill=(200, 40, 60))
    d.rectangle((w // 2, h // 2, w - w // 8, h - h // 10), fill=(30, 160, 90))
    return im


def write_photos(d):
    os.makedirs(d, exist_ok=True)
    photo(320, 240, 1).save(os.path.join(d, "landscape.jpg"), quality=90)
    photo(180, 256, 2).save(os.path.join(d, "portrait.jpg"), quality=85)
    photo(33, 1000, 3).save(os.path.join(d, "tall.png"))
    photo(1000, 33, 4).save(os.path.join(d, "wide.png"))
    photo(7, 9, 5).save(os.path.join(d, "tiny.png"))
    # A palette PNG whose entry 3 is transparent (a tRNS of one zero among
    # opaque entries: Pillow keeps it as info["transparency"] = 3 through
    # load_image's convert("RGB")), and entry 7 of the same colour.
    rng = np.random.default_rng(6)
    idx = rng.integers(0, 16, (40, 48), dtype=np.uint8)
    idx[10:30, 12:36] = 3
    idx[0:8, 0:8] = 7
    pal = rng.integers(0, 256, (256, 3), dtype=np.uint8)
    pal[7] = pal[3]
    im = Image.fromarray(idx, "P")
    im.putpalette(pal.flatten().tolist())
    im.save(os.path.join(d, "palette_trns.png"), transparency=3)
    # A gray PNG with a transparency key (kept as the gray colour).
    g = np.array(photo(40, 30, 7).convert("L"))
    g[5:15, 5:25] = 77
    Image.fromarray(g, "L").save(os.path.join(d, "gray_trns.png"),
                                 transparency=77)
    # RGBA: load_image's convert("RGB") drops the alpha.
    a = np.array(photo(50, 30, 8).convert("RGBA"))
    a[..., 3] = np.linspace(0, 255, 50, dtype=np.uint8)[None, :]
    Image.fromarray(a, "RGBA").save(os.path.join(d, "rgba.png"))
    # Stored sideways, EXIF orientation 6: load_image turns it upright.
    ex = Image.Exif()
    ex[0x0112] = 6
    photo(120, 80, 9).save(os.path.join(d, "exif6.jpg"), quality=90,
                           exif=ex.tobytes())


PHOTOS = ["landscape.jpg", "portrait.jpg", "tall.png", "wide.png",
          "tiny.png", "palette_trns.png", "gray_trns.png", "rgba.png",
          "exif6.jpg"]


def clip_ext(t="CLIPFeatureExtractor", **kw):
    """The form openai/clip-vit-base-patch32 and the laion CLIPs ship,
    with 32 for their 224."""
    key = "feature_extractor_type" if "Feature" in t else "image_processor_type"
    d = {"crop_size": 32, "do_center_crop": True, "do_normalize": True,
         "do_resize": True, key: t, "image_mean": OPENAI_MEAN,
         "image_std": OPENAI_STD, "resample": 3, "size": 32}
    d.update(kw)
    return d


def vit_ext(t="ViTFeatureExtractor", **kw):
    """The form google/vit-base-patch16-224 ships."""
    key = "feature_extractor_type" if "Feature" in t else "image_processor_type"
    d = {"do_normalize": True, "do_resize": True, key: t,
         "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
         "resample": 2, "size": 32}
    d.update(kw)
    return d


# (name, base fixture, preprocessor_config.json)
FORMS = [
    ("clip_openai", "clip_tiny", clip_ext()),
    ("clip_int_sizes", "clip_tiny",
     clip_ext("CLIPImageProcessor", size=40, crop_size=32,
              do_convert_rgb=True)),
    ("clip_saved5", "clip_tiny",
     clip_ext("CLIPImageProcessor", size={"shortest_edge": 36},
              crop_size={"height": 32, "width": 32}, resample=2,
              do_rescale=True, rescale_factor=0.00392156862745098,
              do_convert_rgb=True)),
    ("clip_fast4", "clip_tiny",
     clip_ext("CLIPImageProcessorFast", size={"shortest_edge": 32},
              crop_size={"height": 32, "width": 32}, resample=1)),
    ("clip_aspect", "clip_tiny",
     clip_ext("CLIPImageProcessor",
              size={"shortest_edge": 36, "longest_edge": 44})),
    ("clip_maxhw", "clip_tiny",
     clip_ext("CLIPImageProcessor", size={"max_height": 40, "max_width": 48},
              resample=0)),
    ("clip_square_box", "clip_tiny",
     clip_ext("CLIPImageProcessor", size={"height": 32, "width": 32},
              do_center_crop=False, resample=4)),
    ("clip_noresize", "clip_tiny",
     clip_ext("CLIPImageProcessor", do_resize=False,
              crop_size={"height": 32, "width": 32})),
    ("clip_scalars", "clip_tiny",
     clip_ext("CLIPImageProcessor", size=[40, 36], image_mean=0.5,
              image_std=0.25, rescale_factor=1 / 127.5, resample=5,
              do_convert_rgb=False)),
    ("clip_norescale", "clip_tiny",
     clip_ext("CLIPImageProcessor", do_rescale=False,
              image_mean=[127.5, 120.0, 110.0], image_std=[64.0, 60.0, 70.0])),
    ("clip_no_type", "clip_tiny",
     {"size": 36, "crop_size": 32, "do_center_crop": True, "resample": 3}),
    ("vit_legacy", "vit_tiny", vit_ext()),
    ("vit_saved5", "vit_tiny",
     vit_ext("ViTImageProcessor", size={"height": 32, "width": 32},
             do_rescale=True, rescale_factor=0.00392156862745098)),
    ("vit_crop", "vit_tiny",
     vit_ext("ViTImageProcessor", size={"shortest_edge": 40},
             do_center_crop=True, crop_size={"height": 32, "width": 32},
             resample=3, image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD)),
    ("vit_convert_rgb", "vit_tiny",
     vit_ext("ViTImageProcessor", size=[32, 32], do_convert_rgb=True)),
    ("vit_not_square", "vit_tiny",
     vit_ext("ViTImageProcessor", size=40, default_to_square=False,
             do_center_crop=True, crop_size=32)),
    ("vit_no_type", "vit_tiny", {"size": 32, "resample": 2}),
    # facebook/deit-base-distilled-patch16-224's form (256 and 224 there).
    ("deit_distilled", "deit_teacher",
     {"crop_size": 32, "do_center_crop": True, "do_normalize": True,
      "do_resize": True, "feature_extractor_type": "DeiTFeatureExtractor",
      "image_mean": IMAGENET_MEAN, "image_std": IMAGENET_STD, "resample": 3,
      "size": 36}),
    # facebook/dinov2-small's (256 and 224 there, for positions trained at
    # 518): the model runs at the processor's size, here 32 for the base's
    # 56.
    ("dinov2_small", "dinov2_model",
     {"crop_size": {"height": 32, "width": 32}, "do_center_crop": True,
      "do_convert_rgb": True, "do_normalize": True, "do_rescale": True,
      "do_resize": True, "image_mean": IMAGENET_MEAN,
      "image_processor_type": "BitImageProcessor", "image_std": IMAGENET_STD,
      "resample": 3, "rescale_factor": 0.00392156862745098,
      "size": {"shortest_edge": 36}}),
    # No class named: transformers takes the model type's, BiT's for
    # dinov2 (and has none for dinov2_with_registers: refused below).
    ("dinov2_no_type", "dinov2_cls", {"crop_size": 32, "size": 40}),
    # Code of the repository's own, which transformers runs only when
    # trusted; otherwise it takes the model's class, here ViT's.
    ("vit_auto_map", "vit_tiny",
     {"auto_map": {"AutoImageProcessor": "proc.MyProcessor"},
      "feature_extractor_type": "CLIPFeatureExtractor", "size": 32}),
]

# (name, base fixture, preprocessor_config.json or None for no file, what
# vit's message must contain); transformers refuses each.
REFUSED = [
    ("longest_edge_alone", "clip_tiny",
     clip_ext("CLIPImageProcessor", size={"longest_edge": 40}),
     "longest_edge alone"),
    ("unknown_type", "vit_tiny",
     vit_ext("FancyImageProcessor"), "FancyImageProcessor is not supported"),
    ("crop_not_hw", "clip_tiny",
     clip_ext("CLIPImageProcessor", crop_size={"shortest_edge": 32}),
     "crop_size has no height and width"),
    ("size_bad_keys", "vit_tiny",
     vit_ext("ViTImageProcessor", size={"height": 32}), "\"size\" must have"),
    ("size_float", "vit_tiny", vit_ext("ViTImageProcessor", size=32.0),
     "\"size\" must be a positive integer"),
    ("no_processor", "vit_tiny", None, "no preprocessor_config.json"),
    ("dinov2_reg_no_type", "dinov2_reg_cls", {"crop_size": 32, "size": 40},
     "names no image processor class"),
]


def link_base(d, base):
    for f in ("config.json", "model.safetensors"):
        os.symlink(os.path.join("..", "..", base, f), os.path.join(d, f))


def reference(d, backend, images):
    """transformers' pixels and outputs, or its error."""
    import transformers
    from transformers import AutoImageProcessor
    try:
        proc = AutoImageProcessor.from_pretrained(d, backend=backend)
        px = proc(images=images, return_tensors="pt")["pixel_values"]
    except Exception as e:  # noqa: BLE001 - the error is the reference
        msg = f"{type(e).__name__}: {e}".replace(OUT, "tests/fixtures/hub")
        return None, None, msg
    arch = json.load(open(os.path.join(d, "config.json")))["architectures"][0]
    with torch.no_grad():
        m = getattr(transformers, arch).from_pretrained(d).eval()
        if arch == "CLIPModel":
            out = m.get_image_features(pixel_values=px)
            out = getattr(out, "pooler_output", out)
        elif arch.endswith("Model"):
            out = m(pixel_values=px).pooler_output
        else:
            out = m(pixel_values=px).logits
    return px.numpy().astype(np.float32), out.numpy().astype(np.float32), None


def generate():
    import PIL
    import torchvision
    import transformers
    from transformers.image_utils import load_image
    from transformers.utils import logging
    logging.disable_progress_bar()
    logging.set_verbosity_error()

    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    write_photos(os.path.join(OUT, "photos"))
    images = [load_image(os.path.join(OUT, "photos", p)) for p in PHOTOS]
    man = {"versions": {"transformers": transformers.__version__,
                        "torch": torch.__version__,
                        "torchvision": torchvision.__version__,
                        "Pillow": PIL.__version__,
                        "numpy": np.__version__},
           "photos": ["photos/" + p for p in PHOTOS], "forms": [],
           "refused": []}
    for name, base, cfg in FORMS:
        d = os.path.join(OUT, name)
        os.makedirs(d)
        link_base(d, base)
        with open(os.path.join(d, "preprocessor_config.json"), "w") as f:
            json.dump(cfg, f, indent=2)
        form = {"name": name, "base": base}
        for backend in ("pil", "torchvision"):
            px, out, err = reference(d, backend, images)
            if err:
                form[backend] = {"error": err}
                print(f"{name} {backend}: transformers refuses: {err[:90]}")
                continue
            np.save(os.path.join(d, f"ref_pixels_{backend}.npy"), px)
            np.save(os.path.join(d, f"ref_out_{backend}.npy"), out)
            form[backend] = {"pixels": f"ref_pixels_{backend}.npy",
                             "out": f"ref_out_{backend}.npy"}
        man["forms"].append(form)
    for name, base, cfg, msg in REFUSED:
        d = os.path.join(OUT, "refused", name)
        os.makedirs(d)
        link_base(d, os.path.join("..", base))
        if cfg is not None:
            with open(os.path.join(d, "preprocessor_config.json"), "w") as f:
                json.dump(cfg, f, indent=2)
        _, _, err = reference(d, "pil", images[:1])
        assert err, f"transformers accepts {name}"
        print(f"refused/{name}: transformers: {err[:90]}")
        man["refused"].append({"name": "refused/" + name, "base": base,
                               "message": msg, "transformers": err[:300]})
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(man, f, indent=1)


if __name__ == "__main__":
    generate()
