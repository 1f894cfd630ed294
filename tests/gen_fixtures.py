#!/usr/bin/env python3
"""Makes the reference fixtures under tests/fixtures/ with `transformers`.

Each model fixture is a tiny checkpoint of a supported architecture, made
with a fixed seed and saved by `save_pretrained` exactly as users' models
are, plus the reference outputs the C tests compare against:

  ref_pixels.npy   (N, C, H, W) float32 pixel tensor fed to the model
  ref_logits.npy   (N, num_labels) logits        [classifiers]
  ref_hidden.npy   (N, T, D) last_hidden_state (after the final layernorm)
  ref_embed.npy    (N, D) pooler output, or the class token without a pooler

and for CLIP models (tiny CLIPModel, and the separate towers saved as
CLIPVisionModelWithProjection / CLIPTextModelWithProjection):

  ref_pixels.npy        (N, C, H, W) pixels
  ref_image_embeds.npy  (N, E) get_image_features (not normalized)
  ref_ids.npy           (M, T) token ids as float32 (exact below 2^24),
                        padded after the end-of-text token
  ref_text_embeds.npy   (M, E) get_text_features (not normalized)
  ref_logits_per_image.npy (N, M)

The C suite needs no Python: the fixtures are committed. Re-run this script
when a case is added:

    pip install torch transformers pillow safetensors numpy tifffile imagecodecs
    python3 tests/gen_fixtures.py
"""
import json
import os
import shutil
import sys

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from transformers import (CLIPConfig, CLIPImageProcessorPil, CLIPModel,
                          CLIPTextModelWithProjection,
                          CLIPVisionModelWithProjection, ViTConfig,
                          ViTForImageClassification, ViTImageProcessorPil,
                          ViTModel)

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures")

LABELS = ["zero", "one", "two", "three", "four", "five", "six", "seven",
          "eight", "nine, the \"last\" digit"]


def tiny_config(**kw):
    base = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                intermediate_size=64, image_size=32, patch_size=8,
                num_channels=3, layer_norm_eps=1e-12, hidden_act="gelu",
                qkv_bias=True)
    base.update(kw)
    return ViTConfig(**base)


def randomize(model, seed, gain="layernorm"):
    """Random weights of a realistic scale everywhere, including the
    layernorm gains and biases that init leaves at 1 and 0, so that every
    parameter changes the output and a mis-loaded one is caught. Gains are
    the weights whose names hold `gain`."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if gain in name and name.endswith("weight"):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))


def cast_like_saved(model, dtype):
    """Rounds the weights to `dtype` and back, so that the float32 reference
    runs on exactly the values the saved checkpoint holds."""
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(dtype).to(torch.float32))


def save_dtype(model, path, dtype):
    """save_pretrained, then rewrite the weights in `dtype` (F16 / BF16), as
    a checkpoint published in half precision is stored."""
    model.save_pretrained(path, safe_serialization=True)
    if dtype is torch.float32:
        return
    f = os.path.join(path, "model.safetensors")
    sd = load_file(f)
    save_file({k: v.to(dtype).contiguous() for k, v in sd.items()}, f,
              metadata={"format": "pt"})


def write_processor(path, h, w):
    ViTImageProcessorPil(size={"height": h, "width": w}, resample=2,
                         image_mean=[0.5, 0.5, 0.5],
                         image_std=[0.5, 0.5, 0.5]).save_pretrained(path)


def npy(path, name, arr):
    np.save(os.path.join(path, name), np.ascontiguousarray(arr, np.float32))


def make_vit(name, cfg, seed, dtype=torch.float32, head=True, n=3,
             shard=None):
    path = os.path.join(OUT, name)
    shutil.rmtree(path, ignore_errors=True)
    torch.manual_seed(seed)
    model = (ViTForImageClassification if head else ViTModel)(cfg).eval()
    randomize(model, seed)
    if dtype is not torch.float32:
        cast_like_saved(model, dtype)
    if shard:
        model.save_pretrained(path, safe_serialization=True,
                              max_shard_size=shard)
    else:
        save_dtype(model, path, dtype)
    ih, iw = (cfg.image_size if isinstance(cfg.image_size, (list, tuple))
              else (cfg.image_size, cfg.image_size))
    write_processor(path, ih, iw)

    g = torch.Generator().manual_seed(seed + 1)
    write_reference(path, model,
                    torch.randn((n, cfg.num_channels, ih, iw), generator=g))


def write_reference(path, model, pixels):
    """The model's outputs for `pixels`: ref_pixels, ref_hidden (after the
    final layernorm), ref_embed (the pooler output, or the class token
    without a pooler) and a classifier's ref_logits."""
    with torch.no_grad():
        out = model(pixel_values=pixels, output_hidden_states=True)
        if hasattr(out, "logits"):
            base = getattr(model, model.base_model_prefix)
            hidden = base.layernorm(out.hidden_states[-1])
            npy(path, "ref_logits.npy", out.logits.numpy())
            embed = hidden[:, 0]
        else:
            hidden = out.last_hidden_state
            embed = (out.pooler_output if out.pooler_output is not None
                     else hidden[:, 0])
    npy(path, "ref_pixels.npy", pixels.numpy())
    npy(path, "ref_hidden.npy", hidden.numpy())
    npy(path, "ref_embed.npy", embed.numpy())
    print(f"{os.path.basename(path)}: {sorted(os.listdir(path))}")


def randomize_family(model, seed):
    """randomize() for DeiT and DINOv2, whose norms are named "norm1" and
    "norm2": gains near 1, and DINOv2's layer scales near 0.5, so that a
    layer scale applied twice or not at all is caught."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
            elif name.endswith("lambda1"):
                p.copy_(0.5 + 0.3 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))


def make_family(name, model, proc, seed, n=3):
    """A tiny DeiT or DINOv2 checkpoint (any class, classifier or not) with
    its processor, and the reference outputs for random pixels of the size
    the processor makes, which for DINOv2 differs from the size its
    position embeddings were trained at."""
    path = os.path.join(OUT, name)
    shutil.rmtree(path, ignore_errors=True)
    model.eval()
    randomize_family(model, seed)
    model.save_pretrained(path, safe_serialization=True)
    proc.save_pretrained(path)
    crop = proc.crop_size
    g = torch.Generator().manual_seed(seed + 1)
    write_reference(path, model, torch.randn(
        (n, 3, crop["height"], crop["width"]), generator=g))


def make_families(lab):
    """DeiT (distilled, plain, the base model with its pooler) and DINOv2
    (shrinking its positions with plain bicubic, growing them, and with
    registers the antialiased resize, at a size that is no multiple of the
    patch; giant's SwiGLU MLP)."""
    from transformers import (BitImageProcessorPil, DeiTConfig,
                              DeiTForImageClassification,
                              DeiTForImageClassificationWithTeacher,
                              DeiTImageProcessorPil, DeiTModel, Dinov2Config,
                              Dinov2ForImageClassification, Dinov2Model,
                              Dinov2WithRegistersConfig,
                              Dinov2WithRegistersForImageClassification,
                              Dinov2WithRegistersModel)
    deit = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                intermediate_size=64, image_size=32, patch_size=8)
    dproc = DeiTImageProcessorPil(size={"height": 36, "width": 36},
                                  crop_size={"height": 32, "width": 32})
    torch.manual_seed(21)
    make_family("deit_teacher",
                DeiTForImageClassificationWithTeacher(
                    DeiTConfig(**deit, **lab)), dproc, seed=21)
    torch.manual_seed(22)
    make_family("deit_cls",
                DeiTForImageClassification(
                    DeiTConfig(**deit, hidden_act="gelu_new", **lab)),
                dproc, seed=22)
    torch.manual_seed(23)
    make_family("deit_model", DeiTModel(DeiTConfig(**deit)), dproc, seed=23)

    dino = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                mlp_ratio=3, patch_size=8)

    def bit(shortest, crop):
        return BitImageProcessorPil(
            size={"shortest_edge": shortest},
            crop_size={"height": crop, "width": crop},
            image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
    torch.manual_seed(24)
    make_family("dinov2_model",
                Dinov2Model(Dinov2Config(**dino, image_size=56)),
                bit(44, 40), seed=24)
    torch.manual_seed(25)
    make_family("dinov2_cls",
                Dinov2ForImageClassification(
                    Dinov2Config(**dino, image_size=32, **lab)),
                bit(52, 48), seed=25)
    torch.manual_seed(26)
    make_family("dinov2_reg",
                Dinov2WithRegistersModel(
                    Dinov2WithRegistersConfig(**dino, image_size=48,
                                              num_register_tokens=3)),
                bit(40, 36), seed=26)
    torch.manual_seed(28)
    make_family("dinov2_swiglu",
                Dinov2Model(Dinov2Config(**dino, image_size=32,
                                         use_swiglu_ffn=True)),
                bit(44, 40), seed=28)
    torch.manual_seed(27)
    make_family("dinov2_reg_cls",
                Dinov2WithRegistersForImageClassification(
                    Dinov2WithRegistersConfig(**dino, image_size=24,
                                              num_register_tokens=2, **lab)),
                bit(36, 32), seed=27)


def randomize_clip(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == "logit_scale":
                continue
            if ("layer_norm" in name or "layrnorm" in name or
                    "layernorm" in name) and name.endswith("weight"):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))


def clip_ids(n, t, vocab, bos, eos, pad, seed):
    """n sequences of different lengths <= t: bos, random ids below every
    special id, eos, then padding to t."""
    g = torch.Generator().manual_seed(seed)
    low = min(bos, eos, pad, vocab)
    ids = torch.full((n, t), pad, dtype=torch.long)
    mask = torch.zeros((n, t), dtype=torch.long)
    for i in range(n):
        length = t - 3 * i if t - 3 * i >= 3 else 3
        body = torch.randint(0, low, (length - 2,), generator=g)
        ids[i, :length] = torch.cat([torch.tensor([bos]), body,
                                     torch.tensor([eos])])
        mask[i, :length] = 1
    return ids, mask


def make_clip(name, seed, hidden_act="quick_gelu", legacy_eos=True,
              dtype=torch.float32, vocab=1000, towers="both", tokenizer=None):
    """A tiny CLIPModel. legacy_eos: text_config.eos_token_id == 2, as in
    the openai/clip-* configs, so transformers pools at the argmax id (the
    real end-of-text id must then be the largest); otherwise it pools at
    the first eos_token_id."""
    path = os.path.join(OUT, name)
    shutil.rmtree(path, ignore_errors=True)
    eos = vocab - 1
    bos = vocab - 2
    pad = 1 if legacy_eos else eos
    text = dict(vocab_size=vocab, hidden_size=32, intermediate_size=72,
                num_hidden_layers=2, num_attention_heads=4,
                max_position_embeddings=16, hidden_act=hidden_act,
                bos_token_id=bos, eos_token_id=2 if legacy_eos else eos,
                pad_token_id=pad, projection_dim=24)
    vision = dict(hidden_size=48, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=6, image_size=32, patch_size=8,
                  hidden_act=hidden_act, projection_dim=24)
    cfg = CLIPConfig(text_config=text, vision_config=vision,
                     projection_dim=24, logit_scale_init_value=2.6592)
    torch.manual_seed(seed)
    model = CLIPModel(cfg).eval()
    randomize_clip(model, seed)
    if dtype is not torch.float32:
        cast_like_saved(model, dtype)

    g = torch.Generator().manual_seed(seed + 1)
    pixels = torch.randn((3, 3, 32, 32), generator=g)
    ids, mask = clip_ids(4, 16, vocab, bos, eos, pad, seed + 2)
    with torch.no_grad():
        img = model.get_image_features(pixel_values=pixels)
        txt = model.get_text_features(input_ids=ids, attention_mask=mask)
        img = getattr(img, "pooler_output", img)
        txt = getattr(txt, "pooler_output", txt)
        lpi = model(input_ids=ids, attention_mask=mask,
                    pixel_values=pixels).logits_per_image

    if towers == "both":
        save_dtype(model, path, dtype)
    else:
        cls = (CLIPVisionModelWithProjection if towers == "vision"
               else CLIPTextModelWithProjection)
        sub = cfg.vision_config if towers == "vision" else cfg.text_config
        sub.projection_dim = 24
        part = cls(sub).eval()
        missing = part.load_state_dict(model.state_dict(), strict=False)
        assert not missing.missing_keys, missing.missing_keys
        save_dtype(part, path, dtype)
    if towers in ("both", "vision"):
        CLIPImageProcessorPil(size={"shortest_edge": 32},
                              crop_size={"height": 32, "width": 32}
                              ).save_pretrained(path)
        npy(path, "ref_pixels.npy", pixels.numpy())
        npy(path, "ref_image_embeds.npy", img.numpy())
    if towers in ("both", "text"):
        npy(path, "ref_ids.npy", ids.numpy())
        npy(path, "ref_text_embeds.npy", txt.numpy())
    if towers == "both":
        npy(path, "ref_logits_per_image.npy", lpi.numpy())
    if tokenizer:
        for f in os.listdir(tokenizer):
            shutil.copy(os.path.join(tokenizer, f), path)
    print(f"{name}: {sorted(os.listdir(path))}")


def siglip_ids(n, t, vocab, eos, pad, seed):
    """n texts of random ids, each ended by eos and padded with pad to t,
    as SigLIP's tokenizer pads them (padding="max_length"): one of full
    length, one of a single token; and their attention masks."""
    g = torch.Generator().manual_seed(seed)
    lens = [t, 1] + [int(x) for x in torch.randint(2, t, (n - 2,),
                                                   generator=g)]
    ids = torch.full((n, t), pad, dtype=torch.long)
    mask = torch.zeros((n, t), dtype=torch.long)
    for i, n_i in enumerate(lens):
        ids[i, :n_i - 1] = torch.randint(3, vocab, (n_i - 1,), generator=g)
        ids[i, n_i - 1] = eos
        mask[i, :n_i] = 1
    return ids, mask


def make_siglip(name, seed, towers="both", dtype=torch.float32):
    """A tiny SiglipModel (or one of its towers): the vision tower without
    a class token, pooled by its attention head; the text tower without a
    causal mask, padding masked out, pooled at the last position; scores
    sigmoid(exp(logit_scale) cos + logit_bias)."""
    from transformers import SiglipConfig, SiglipImageProcessorPil
    from transformers import SiglipModel, SiglipTextModel, SiglipVisionModel
    path = os.path.join(OUT, name)
    shutil.rmtree(path, ignore_errors=True)
    vocab, eos, pad = 300, 1, 1
    text = dict(vocab_size=vocab, hidden_size=32, intermediate_size=72,
                num_hidden_layers=2, num_attention_heads=4,
                max_position_embeddings=16, projection_size=48,
                pad_token_id=pad, eos_token_id=eos, bos_token_id=None)
    vision = dict(hidden_size=48, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=6, image_size=32, patch_size=8)
    cfg = SiglipConfig(text_config=text, vision_config=vision)
    torch.manual_seed(seed)
    model = SiglipModel(cfg).eval()
    randomize_family(model, seed)
    with torch.no_grad():
        model.logit_scale.fill_(2.3)
        model.logit_bias.fill_(-1.5)
    if dtype is not torch.float32:
        cast_like_saved(model, dtype)
    g = torch.Generator().manual_seed(seed + 1)
    pixels = torch.randn((3, 3, 32, 32), generator=g)
    ids, mask = siglip_ids(5, 16, vocab, eos, pad, seed + 2)
    with torch.no_grad():
        img = model.get_image_features(pixel_values=pixels).pooler_output
        txt = model.get_text_features(input_ids=ids,
                                      attention_mask=mask).pooler_output
        lpi = model(input_ids=ids, attention_mask=mask,
                    pixel_values=pixels).logits_per_image
    if towers == "both":
        save_dtype(model, path, dtype)
    else:
        cls = SiglipVisionModel if towers == "vision" else SiglipTextModel
        sub = cfg.vision_config if towers == "vision" else cfg.text_config
        part = cls(sub).eval()
        tower = model.vision_model if towers == "vision" else model.text_model
        part.load_state_dict(tower.state_dict())
        save_dtype(part, path, dtype)
    if towers in ("both", "vision"):
        SiglipImageProcessorPil(size={"height": 32, "width": 32}
                                ).save_pretrained(path)
        npy(path, "ref_pixels.npy", pixels.numpy())
        npy(path, "ref_image_embeds.npy", img.numpy())
    if towers in ("both", "text"):
        npy(path, "ref_ids.npy", ids.numpy())
        npy(path, "ref_lens.npy", mask.sum(1).numpy())
        npy(path, "ref_text_embeds.npy", txt.numpy())
    if towers == "both":
        npy(path, "ref_logits_per_image.npy", lpi.numpy())
    print(f"{name}: {sorted(os.listdir(path))}")


def make_photo(path, seed):
    """A photo-like 256x192 JPEG: smooth gradients, shapes and noise, large
    enough for libjpeg's DCT scaling (vit's --fast-decode) to apply."""
    from PIL import Image, ImageDraw
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:192, 0:256]
    img = np.stack([x, y, (x + y) // 2], -1).astype(np.float32)
    img += rng.normal(0, 8, img.shape)
    im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(im)
    d.ellipse((60, 40, 150, 130), fill=(200, 40, 60))
    d.rectangle((170, 100, 240, 180), fill=(30, 160, 90))
    im.save(path, quality=90)


def make_clip_tok(name, seed):
    """A tiny CLIPModel with the real CLIP vocabulary and tokenizer files,
    F16, for the path from strings and image files to embeddings, matches
    and zero-shot labels, all through the reference's own tokenizer and
    image processor."""
    from transformers import CLIPTokenizerFast
    from transformers.image_utils import load_image
    sys.path.insert(0, HERE)
    import gen_fixtures_text

    path = os.path.join(OUT, name)
    shutil.rmtree(path, ignore_errors=True)
    text = dict(vocab_size=49408, hidden_size=32, intermediate_size=64,
                num_hidden_layers=2, num_attention_heads=4,
                max_position_embeddings=77, hidden_act="quick_gelu",
                bos_token_id=49406, eos_token_id=2, pad_token_id=1,
                projection_dim=24)
    vision = dict(hidden_size=48, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=6, image_size=32, patch_size=8,
                  hidden_act="quick_gelu", projection_dim=24)
    cfg = CLIPConfig(text_config=text, vision_config=vision,
                     projection_dim=24, logit_scale_init_value=2.6592)
    torch.manual_seed(seed)
    model = CLIPModel(cfg).eval()
    randomize_clip(model, seed)
    cast_like_saved(model, torch.float16)
    save_dtype(model, path, torch.float16)
    gen_fixtures_text.write_bpe_dir(path)
    proc = CLIPImageProcessorPil(size={"shortest_edge": 32},
                                 crop_size={"height": 32, "width": 32})
    proc.save_pretrained(path)
    tok = CLIPTokenizerFast.from_pretrained(path)

    texts = ["a photo of a cat", "A Photo Of A DOG!", "the number 7",
             "ünïcödé and emoji 🐈‍⬛ 日本語", "",
             " ".join(["a long caption that goes on"] * 20)]
    # Files as transformers' load_image opens them (EXIF orientation
    # applied, then convert("RGB"), which drops alpha): a plain JPEG and
    # PNG, a JPEG stored sideways (orientation 6) and an RGBA PNG.
    make_photo(os.path.join(OUT, "cli", "photo.jpg"), seed)
    images = ["tests/fixtures/cli/gradient.jpg", "tests/fixtures/cli/noise.png",
              "tests/fixtures/images/exif_jpg_6.jpg",
              "tests/fixtures/images/alpha_rgba8.png",
              "tests/fixtures/cli/photo.jpg"]
    labels = ["cat", "dog", "seven"]
    template = "a photo of a {}."
    root = os.path.dirname(HERE)

    def text_features(strings):
        t = tok(strings, padding=True, truncation=True, max_length=77,
                return_tensors="pt")
        with torch.no_grad():
            f = model.get_text_features(input_ids=t["input_ids"],
                                        attention_mask=t["attention_mask"])
        return getattr(f, "pooler_output", f)

    with torch.no_grad():
        pil = [load_image(os.path.join(root, f)) for f in images]
        pixels = proc(images=pil, return_tensors="pt")["pixel_values"]
        img = model.get_image_features(pixel_values=pixels)
        img = getattr(img, "pooler_output", img)
        txt = text_features(texts)
        match = model(pixel_values=pixels,
                      **tok(texts[:3], padding=True, return_tensors="pt"))
        zs = model(pixel_values=pixels,
                   **tok([template.replace("{}", l) for l in labels],
                         padding=True, return_tensors="pt"))
    npy(path, "ref_str_text_embeds.npy", txt.numpy())
    npy(path, "ref_file_image_embeds.npy", img.numpy())
    npy(path, "ref_match_logits.npy", match.logits_per_image.numpy())
    npy(path, "ref_zeroshot_logits.npy", zs.logits_per_image.numpy())
    with open(os.path.join(path, "ref_inputs.json"), "w") as f:
        json.dump({"texts": texts, "images": images,
                   "match_texts": texts[:3], "labels": labels,
                   "template": template}, f, ensure_ascii=False, indent=1)
    print(f"{name}: {sorted(os.listdir(path))}")


def make_siglip_tok(name, seed, tok="siglip", masked="siglip_bf",
                    vocab=3000):
    """A tiny SiglipModel with a tokenizer of tests/fixtures/text (`tok`:
    SigLIP's SentencePiece in the hub's layout, whose tokenizer returns no
    attention mask, or SigLIP 2's Gemma BPE) and image processor, for
    strings and image files end to end: texts padded to 64 as SigLIP's
    processor and zero-shot pipeline pad them; and NAME_mask, when
    `masked` names a tokenizer, the same model with it (SigLIP's as
    transformers 5 saves it, which returns the mask, so the padding is
    masked)."""
    from transformers import (AutoTokenizer, SiglipConfig,
                              SiglipImageProcessorPil, SiglipModel)
    from transformers.image_utils import load_image
    path = os.path.join(OUT, name)
    shutil.rmtree(path, ignore_errors=True)
    text = dict(vocab_size=vocab, hidden_size=32, intermediate_size=64,
                num_hidden_layers=2, num_attention_heads=4,
                max_position_embeddings=64, projection_size=48,
                pad_token_id=1, eos_token_id=1, bos_token_id=None)
    vision = dict(hidden_size=48, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=6, image_size=32, patch_size=8)
    torch.manual_seed(seed)
    model = SiglipModel(SiglipConfig(text_config=text,
                                     vision_config=vision)).eval()
    randomize_family(model, seed)
    with torch.no_grad():
        model.logit_scale.fill_(2.0)
        model.logit_bias.fill_(-2.0)
    model.save_pretrained(path, safe_serialization=True)
    for f in os.listdir(os.path.join(OUT, "text", tok)):
        shutil.copy(os.path.join(OUT, "text", tok, f), path)
    proc = SiglipImageProcessorPil(size={"height": 32, "width": 32})
    proc.save_pretrained(path)
    dirs = [path]
    if masked:
        dirs.append(path + "_mask")
        shutil.rmtree(dirs[1], ignore_errors=True)
        os.makedirs(dirs[1])
        for f in ("config.json", "model.safetensors",
                  "preprocessor_config.json", "ref_inputs.json",
                  "ref_file_image_embeds.npy"):
            os.symlink(os.path.join("..", name, f), os.path.join(dirs[1], f))
        for f in os.listdir(os.path.join(OUT, "text", masked)):
            shutil.copy(os.path.join(OUT, "text", masked, f), dirs[1])

    texts = ["a photo of a cat", "A Photo Of A DOG!", "the number 7",
             "ünïcödé, Ελληνικά and 日本語", "",
             " ".join(["a long caption that goes on"] * 20)]
    images = ["tests/fixtures/cli/gradient.jpg", "tests/fixtures/cli/noise.png",
              "tests/fixtures/images/exif_jpg_6.jpg",
              "tests/fixtures/images/alpha_rgba8.png",
              "tests/fixtures/cli/photo.jpg"]
    labels = ["cat", "dog", "seven"]
    template = "This is a photo of {}."
    root = os.path.dirname(HERE)
    with torch.no_grad():
        pil = [load_image(os.path.join(root, f)) for f in images]
        pixels = proc(images=pil, return_tensors="pt")["pixel_values"]
        img = model.get_image_features(pixel_values=pixels).pooler_output
        for d in dirs:
            tk = AutoTokenizer.from_pretrained(d)

            def enc(strings):
                return tk(strings, padding="max_length", max_length=64,
                           truncation=True, return_tensors="pt")
            txt = model.get_text_features(**enc(texts)).pooler_output
            match = model(pixel_values=pixels, **enc(texts[:3]))
            zs = model(pixel_values=pixels,
                       **enc([template.format(l) for l in labels]))
            npy(d, "ref_str_text_embeds.npy", txt.numpy())
            npy(d, "ref_match_logits.npy", match.logits_per_image.numpy())
            npy(d, "ref_zeroshot_logits.npy", zs.logits_per_image.numpy())
            print(f"{os.path.basename(d)}: the tokenizer returns "
                  f"{sorted(enc(texts[:1]).keys())}")
    npy(path, "ref_file_image_embeds.npy", img.numpy())
    with open(os.path.join(path, "ref_inputs.json"), "w") as f:
        json.dump({"texts": texts, "images": images,
                   "match_texts": texts[:3], "labels": labels,
                   "template": template}, f, ensure_ascii=False, indent=1)
    print(f"{name}: {sorted(os.listdir(path))}")


def main():
    os.makedirs(OUT, exist_ok=True)
    id2label = {i: l for i, l in enumerate(LABELS)}
    label2id = {l: i for i, l in id2label.items()}
    lab = dict(id2label=id2label, label2id=label2id)

    make_vit("vit_tiny", tiny_config(**lab), seed=1)
    make_vit("vit_nobias_f16",
             tiny_config(qkv_bias=False, hidden_act="gelu_new", **lab),
             seed=2, dtype=torch.float16)
    make_vit("vit_bf16", tiny_config(layer_norm_eps=1e-6, **lab), seed=3,
             dtype=torch.bfloat16)
    make_vit("vit_sharded", tiny_config(num_hidden_layers=3, **lab),
             seed=4, shard="20KB")
    make_vit("vit_model", tiny_config(hidden_act="quick_gelu"), seed=5,
             head=False)
    make_vit("vit_rect",
             tiny_config(image_size=[24, 40], patch_size=4, num_channels=1,
                         hidden_size=48, num_attention_heads=6,
                         intermediate_size=96, num_labels=5),
             seed=6)

    make_families(lab)

    make_clip("clip_tiny", seed=11)
    make_clip("clip_gelu_f16", seed=12, hidden_act="gelu", legacy_eos=False,
              dtype=torch.float16)
    make_clip("clip_vision", seed=13, towers="vision")
    make_clip("clip_text", seed=13, towers="text", legacy_eos=False)
    make_clip_tok("clip_tok", seed=14)
    # open_clip's form of CLIP; links to clip_tok's tokenizer files.
    sys.path.insert(0, HERE)
    import gen_fixtures_openclip
    gen_fixtures_openclip.generate()
    make_siglip("siglip_tiny", seed=31)
    make_siglip("siglip_bf16", seed=32, dtype=torch.bfloat16)
    make_siglip("siglip_vision", seed=33, towers="vision")
    make_siglip("siglip_text", seed=33, towers="text")
    make_siglip_tok("siglip_tok", seed=34)
    make_siglip_tok("siglip2_tok", seed=35, tok="gemma", masked=None,
                    vocab=3500)

    sys.path.insert(0, HERE)
    try:
        import gen_fixtures_images
    except ImportError:
        gen_fixtures_images = None
    if gen_fixtures_images is not None:
        gen_fixtures_images.generate(os.path.join(OUT, "images"))
    # After the models it links to.
    import gen_fixtures_hub
    gen_fixtures_hub.generate()
    # timm's (photos from the hub fixtures), and its architecture table.
    import gen_fixtures_timm
    gen_fixtures_timm.generate()
    gen_fixtures_timm.write_archs()
    write_versions()


def write_versions():
    """tests/fixtures/VERSIONS: the reference versions used."""
    import imagecodecs
    import open_clip
    import PIL
    import sentencepiece
    import tifffile
    import timm
    import tokenizers
    import torchvision
    import transformers
    with open(os.path.join(OUT, "VERSIONS"), "w") as f:
        f.write("# The reference versions the committed fixtures were made "
                "with.\n# tests/gen_fixtures.py rewrites this file when it "
                "regenerates them all;\n# tests/fixtures/hub/manifest.json "
                "records the same for the hub fixtures.\n")
        for name, mod in [("transformers", transformers), ("torch", torch),
                          ("torchvision", torchvision), ("Pillow", PIL),
                          ("numpy", np), ("tokenizers", tokenizers),
                          ("sentencepiece", sentencepiece),
                          ("tifffile", tifffile),
                          ("imagecodecs", imagecodecs), ("timm", timm),
                          ("open_clip_torch", open_clip)]:
            f.write(f"{name} {mod.__version__.split('+')[0]}\n")


if __name__ == "__main__":
    main()
