#!/usr/bin/env python3
"""timm's Vision Transformers as the hub holds them: tiny checkpoints made
with timm and saved by its own `save_for_hf` (config.json with
`architecture`, `num_classes`, `num_features`, `global_pool`, `model_args`,
`pretrained_cfg`, optional `label_names`; model.safetensors in timm's
tensor names), and what timm makes of image files through the eval
transform its pretrained_cfg resolves to:

  timm/NAME/            config.json, model.safetensors, and
    ref_pixels.npy      (N, 3, H, W) create_transform(**resolve_model_data_config)
                        of the photos (tests/fixtures/hub/photos), each
                        opened with PIL and .convert("RGB")
    ref_logits.npy      (N, num_classes) the model's logits     [classifiers]
    ref_embed.npy       (N, D) forward_head(pre_logits=True): the pooled,
                        fc-normed features `vit embed` gives
  timm/manifest.json    per fixture: the photos, what it covers
  timm/bin_only/        config.json and pytorch_model.bin alone

It also writes vit/timm_archs.h, the table of timm's VisionTransformer
architectures (what a config.json's `architecture` implies that the
checkpoint's tensors do not show: heads, layernorm eps, activation, the
default pooling), from timm's own registry, each built on the meta device.

    python3 tests/gen_fixtures_timm.py
"""
import json
import os
import shutil
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT = os.path.join(HERE, "fixtures", "timm")
PHOTOS = os.path.join(HERE, "fixtures", "hub", "photos")


def _act_name(act):
    import torch.nn as nn
    from timm.layers import GELUTanh, QuickGELU
    if isinstance(act, QuickGELU):
        return "VIT_ACT_QUICK_GELU"
    if isinstance(act, GELUTanh) or (isinstance(act, nn.GELU) and
                                     act.approximate == "tanh"):
        return "VIT_ACT_GELU_TANH"
    if isinstance(act, nn.GELU):
        return "VIT_ACT_GELU"
    return None


def _arch_row(name):
    """(heads, eps, act, pool, reason): reason is None when vit runs the
    architecture, else why not."""
    import torch.nn as nn
    import timm
    from timm.layers import Mlp, PatchEmbed
    from timm.layers.attention import Attention
    from timm.models import vision_transformer as vt
    with torch.device("meta"):
        m = timm.create_model(name, pretrained=False)
    from timm.models.deit import VisionTransformerDistilled
    if type(m) not in (vt.VisionTransformer, VisionTransformerDistilled):
        return None
    distilled = type(m) is VisionTransformerDistilled
    b = m.blocks[0]
    why = None
    if type(b) is not vt.Block:
        why = f"its blocks are {type(b).__name__}"
    elif type(b.attn) is not Attention:
        why = f"its attention is {type(b.attn).__name__}"
    elif type(b.mlp) is not Mlp:
        why = f"its MLP is {type(b.mlp).__name__}"
    elif not isinstance(b.norm1, nn.LayerNorm):
        why = f"its norm is {type(b.norm1).__name__}"
    elif type(m.patch_embed) is not PatchEmbed:
        why = f"its patch embedding is {type(m.patch_embed).__name__}"
    elif not isinstance(b.attn.q_norm, (nn.LayerNorm, nn.Identity)):
        why = f"its qk-norm is {type(b.attn.q_norm).__name__}"
    elif m.pos_embed is None:
        why = "it has no position embeddings"
    elif m.global_pool == "prr":
        why = "its pooling is 'prr'"
    elif _act_name(b.mlp.act) is None:
        why = f"its activation is {type(b.mlp.act).__name__}"
    if why:
        return (0, 0.0, "VIT_ACT_GELU", "", why)
    return (b.attn.num_heads, b.norm1.eps, _act_name(b.mlp.act),
            "distilled" if distilled else m.global_pool, None)


def write_archs(path=os.path.join(ROOT, "vit", "timm_archs.h")):
    import timm
    rows = []
    names = sorted(n for mod in ("vision_transformer", "deit",
                                 "vision_transformer_hybrid")
                   for n in timm.list_models(module=mod))
    for name in names:
        r = _arch_row(name)
        if r is not None:
            rows.append((name,) + r)
    with open(path, "w") as f:
        f.write("/*\n * timm's VisionTransformer architectures by the name "
                "config.json's\n * `architecture` gives: what the checkpoint's "
                "tensors do not show\n * (heads, layernorm eps, activation, "
                "default global_pool), or why vit\n * does not run it. "
                f"Generated from timm {timm.__version__}'s registry by\n"
                " * tests/gen_fixtures_timm.py; do not edit.\n */\n")
        for name, heads, eps, act, pool, why in rows:
            w = "NULL" if why is None else json.dumps(why)
            f.write(f'{{"{name}", {heads}, {eps!r}f, {act}, "{pool}", {w}}},\n')
    return len(rows)


# Tiny models: (fixture, architecture, model_args, pretrained_cfg changes,
# label_names, what it covers). Each architecture brings its registered
# settings; model_args override them, as timm's create_model does.
TINY = dict(embed_dim=32, depth=2, num_heads=4, mlp_ratio=2.0, img_size=32,
            patch_size=8)
LABELS = ["zero", "one", "two", "three", "four", "five", "six", "seven",
          "eight", "nine, the \"last\" digit"]
FIXTURES = [
    ("timm_token", "vit_base_patch16_224", dict(num_classes=10),
     dict(crop_pct=0.9, interpolation="bicubic"), LABELS,
     "class token, global_pool token, final norm, label_names, "
     "crop_pct 0.9 bicubic"),
    ("timm_avg", "vit_base_patch16_224",
     dict(num_classes=5, global_pool="avg"),
     dict(crop_pct=1.0, crop_mode="squash", interpolation="bilinear",
          mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]), None,
     "global_pool avg with fc_norm (no final norm), squash, bilinear"),
    ("timm_map", "vit_base_patch16_siglip_224",
     dict(num_classes=7, img_size=(24, 40), patch_size=4),
     dict(crop_pct=1.0, crop_mode="squash"), None,
     "global_pool map (attention pooling), no class token, gelu_tanh, "
     "a 24x40 input"),
    ("timm_reg", "vit_base_patch16_reg4_gap_256", dict(num_classes=3),
     dict(crop_pct=0.95, interpolation="lanczos"), None,
     "4 register tokens, no_embed_class, avg without fc_norm, lanczos"),
    ("timm_ls", "vit_small_patch16_224",
     dict(num_classes=4, init_values=1e-5, qkv_bias=False), dict(), None,
     "layer scale (init_values), no qkv bias"),
    ("timm_qknorm", "vit_base_patch16_224",
     dict(num_classes=6, qk_norm=True, reg_tokens=2, global_pool="map",
          pool_include_prefix=True), dict(crop_pct=0.875), None,
     "qk-norm, class token with 2 registers in the position embeddings, "
     "map pooling over the prefix tokens too"),
    ("timm_noclass", "vit_base_patch16_clip_quickgelu_224",
     dict(num_classes=0, class_token=False, global_pool="avg",
          fc_norm=False), dict(crop_pct=0.8, interpolation="bicubic"), None,
     "class_token=False, pre-norm, no patch bias, quick_gelu, eps 1e-5, "
     "no head (an embedder)"),
    ("timm_maxpool", "vit_base_patch16_224",
     dict(num_classes=3, global_pool="avgmax", no_embed_class=True),
     dict(crop_pct=1.0, crop_mode="border", mean=[0.3, 0.5, 0.7],
          interpolation="bilinear"), None,
     "global_pool avgmax, no_embed_class, crop_mode border (padded with "
     "round(255 * mean))"),
    ("timm_border", "vit_base_patch16_224",
     dict(num_classes=2, img_size=(24, 40), patch_size=4),
     dict(crop_pct=0.9, crop_mode="border"), None,
     "crop_mode border at crop_pct 0.9, a 24x40 input"),
    ("timm_rect", "vit_base_patch16_224",
     dict(num_classes=2, img_size=(40, 24), patch_size=4),
     dict(crop_pct=0.875, crop_mode="center"), None,
     "crop_mode center with a non-square (40x24) input: ResizeKeepRatio"),
    # An architecture at its registered settings (timm's own test_vit,
    # small enough for a fixture): model_args then hold only what timm
    # records of every model (num_classes, in_chans, global_pool,
    # img_size), as on the hub; heads, eps and activation come from the
    # architecture's name.
    ("timm_hub", "test_vit", dict(num_classes=3), dict(), None,
     "registered settings: heads, eps, activation from the name"),
    ("timm_distilled", "deit_tiny_distilled_patch16_224",
     dict(num_classes=5), dict(crop_pct=0.875), None,
     "DeiT distilled (VisionTransformerDistilled): class and distillation "
     "tokens, the mean of both heads"),
]
# The photos, in the order of the reference arrays. exif6.jpg is left
# out: timm's Image.open does not turn an image by its EXIF orientation.
PHOTO_NAMES = ["landscape.jpg", "portrait.jpg", "tall.png", "wide.png",
               "tiny.png", "palette_trns.png", "gray_trns.png", "rgba.png"]


def make(name, arch, args, pcfg, labels, seed):
    import timm
    from PIL import Image
    from timm.models._hub import save_for_hf
    d = os.path.join(OUT, name)
    shutil.rmtree(d, ignore_errors=True)
    kw = dict(TINY) if arch != "test_vit" else {}
    kw.update(args)
    model = timm.create_model(arch, pretrained=False, **kw)
    sys.path.insert(0, HERE)
    from gen_fixtures import randomize
    randomize(model, seed, gain="norm")  # timm's norm1, norm2, fc_norm...
    model.pretrained_cfg = dict(model.pretrained_cfg, **pcfg)
    cfg = {"label_names": labels} if labels else None
    save_for_hf(model, d, model_config=cfg, safe_serialization=True)
    # What a user of the hub runs: the model and transform timm makes of
    # the saved directory.
    m = timm.create_model("local-dir:" + d, pretrained=True).eval()
    dc = timm.data.resolve_model_data_config(m)
    tf = timm.data.create_transform(**dc, is_training=False)
    photos = PHOTO_NAMES if arch != "test_vit" else PHOTO_NAMES[:3]
    x = torch.stack([tf(Image.open(os.path.join(PHOTOS, p)).convert("RGB"))
                     for p in photos])
    with torch.no_grad():
        feats = m.forward_head(m.forward_features(x), pre_logits=True)
        out = m(x)
    np.save(os.path.join(d, "ref_pixels.npy"), x.numpy())
    np.save(os.path.join(d, "ref_embed.npy"), feats.numpy())
    if m.num_classes:
        np.save(os.path.join(d, "ref_logits.npy"), out.numpy())
    return dc


def make_legacy():
    """timm_legacy: timm_hub's weights (a link) under a legacy one-dict
    config.json, as older hub repositories have it: pretrained_cfg's
    fields at the top, `labels` for label_names, no model_args. timm must
    read it into the same model: its outputs are checked equal to
    timm_hub's, whose reference files the fixture shares."""
    import timm
    from PIL import Image
    src, d = os.path.join(OUT, "timm_hub"), os.path.join(OUT, "timm_legacy")
    os.makedirs(d)
    os.symlink("../timm_hub/model.safetensors",
               os.path.join(d, "model.safetensors"))
    with open(os.path.join(src, "config.json")) as f:
        c = json.load(f)
    legacy = {"architecture": c["architecture"],
              "num_features": c["num_features"]}
    legacy.update(c["pretrained_cfg"])
    legacy["fixed_input_size"] = True
    legacy["labels"] = ["cat", "dog", "bird"]
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(legacy, f, indent=2)
    m = timm.create_model("local-dir:" + d, pretrained=True).eval()
    tf = timm.data.create_transform(
        **timm.data.resolve_model_data_config(m), is_training=False)
    x = torch.stack([tf(Image.open(os.path.join(PHOTOS, p)).convert("RGB"))
                     for p in PHOTO_NAMES[:3]])
    assert torch.equal(x, torch.from_numpy(
        np.load(os.path.join(src, "ref_pixels.npy"))))
    with torch.no_grad():
        assert torch.equal(m(x), torch.from_numpy(
            np.load(os.path.join(src, "ref_logits.npy"))))
    return {"name": "timm_legacy", "architecture": c["architecture"],
            "photos": 3, "refs": "timm_hub",
            "covers": "a legacy one-dict config.json: labels, no "
                      "pretrained_cfg object, no model_args"}


def generate():
    import timm
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    man = {"photos": PHOTO_NAMES, "fixtures": []}
    for i, (name, arch, args, pcfg, labels, covers) in enumerate(FIXTURES):
        dc = make(name, arch, args, pcfg, labels, seed=100 + i)
        man["fixtures"].append({"name": name, "architecture": arch,
                                "photos": 3 if arch == "test_vit" else
                                len(PHOTO_NAMES),
                                "covers": covers,
                                "data_config": {k: list(v) if isinstance(
                                    v, tuple) else v for k, v in dc.items()}})
    man["fixtures"].append(make_legacy())
    # A directory with the weights only as pytorch_model.bin.
    import timm
    from timm.models._hub import save_for_hf
    torch.manual_seed(0)
    m = timm.create_model("vit_base_patch16_224", pretrained=False,
                          num_classes=2, **TINY)
    save_for_hf(m, os.path.join(OUT, "bin_only"), safe_serialization=False)
    import PIL
    import torchvision
    man["versions"] = {"timm": timm.__version__, "torch": torch.__version__,
                       "torchvision": torchvision.__version__,
                       "Pillow": PIL.__version__}
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(man, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    if "--archs" in sys.argv:
        print(write_archs(), "architectures")
    else:
        generate()
