#!/usr/bin/env python3
"""Full-size agreement check, outside the test suite: a ViT-B/16 checkpoint
in the exact layout of google/vit-base-patch16-224 (768 wide, 12 layers,
12 heads, 224x224, patch 16, 1000 classes) with random weights, run by
`transformers` and by `build/vit classify` on the same pixel tensor; the
logits must agree within 1e-4 relative (max abs diff / max abs value).

    pip install torch transformers safetensors numpy
    make && python3 bench/fullsize.py [--cache DIR] [--images N]

The checkpoint is made once into the cache directory (default
~/.cache/vit-bench) and reused; it is never committed.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
from transformers import (ViTConfig, ViTForImageClassification,
                          ViTImageProcessorPil)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def vit_b16(cache):
    path = os.path.join(cache, "vit-base-patch16-224-random")
    if not os.path.exists(os.path.join(path, "model.safetensors")):
        torch.manual_seed(0)
        cfg = ViTConfig(hidden_size=768, num_hidden_layers=12,
                        num_attention_heads=12, intermediate_size=3072,
                        image_size=224, patch_size=16, num_labels=1000,
                        id2label={i: f"class {i}" for i in range(1000)},
                        label2id={f"class {i}": i for i in range(1000)})
        model = ViTForImageClassification(cfg).eval()
        # Layernorm gains and biases away from 1 and 0, and a classifier
        # of a realistic scale, so every tensor matters to the logits.
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "layernorm" in name:
                    p.add_(0.1 * torch.randn_like(p))
            model.classifier.weight.normal_(0, 0.2)
        model.save_pretrained(path)
        ViTImageProcessorPil(size={"height": 224, "width": 224}).save_pretrained(path)
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", default=os.path.expanduser("~/.cache/vit-bench"))
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--vit", default=os.path.join(ROOT, "build", "vit"))
    args = ap.parse_args()
    os.makedirs(args.cache, exist_ok=True)
    path = vit_b16(args.cache)

    model = ViTForImageClassification.from_pretrained(path).eval()
    g = torch.Generator().manual_seed(1)
    pixels = torch.randn((args.images, 3, 224, 224), generator=g)
    with torch.no_grad():
        ref = model(pixel_values=pixels).logits.numpy()

    with tempfile.TemporaryDirectory() as tmp:
        npy = os.path.join(tmp, "pixels.npy")
        np.save(npy, pixels.numpy())
        out = subprocess.run([args.vit, "classify", "--model", path,
                              "--format", "jsonl", "--logits", "--top-k", "1",
                              npy], check=True, capture_output=True, text=True)
    got = np.array([json.loads(l)["logits"] for l in out.stdout.splitlines()],
                   np.float32)
    diff = np.abs(got - ref).max()
    rel = diff / np.abs(ref).max()
    same_top1 = (got.argmax(1) == ref.argmax(1)).all()
    print(f"ViT-B/16 random weights, {args.images} images: logits max abs "
          f"diff {diff:.3g}, max |ref| {np.abs(ref).max():.3g}, relative "
          f"{rel:.3g}; top-1 identical: {same_top1}")
    return 0 if rel < 1e-4 and same_top1 else 1


if __name__ == "__main__":
    sys.exit(main())
