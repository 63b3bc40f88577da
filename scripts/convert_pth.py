#!/usr/bin/env python3
"""Convert a PyTorch checkpoint (.pth / .pt state dict) to safetensors for
nave-lab (`model.init`, `explain --weights`, `localize --weights`).

    .venv-ref/bin/python scripts/convert_pth.py resnet50-0676ba61.pth data/weights/resnet50.safetensors
    .venv-ref/bin/python scripts/convert_pth.py dino_deitsmall16_pretrain.pth dino_vits16.safetensors

Handles the usual wrappings: a dict holding the weights under "state_dict",
"model", "teacher" or "student"; the prefixes "module." (DataParallel) and
"backbone." (DINO). Tensor names are otherwise kept as they are: nave-lab uses
torchvision's names for ResNets and timm's/DINO's for ViTs. Needs torch and
safetensors (both in the reference environment scripts/setup-reference.sh makes).
"""
import argparse
import sys

import torch
from safetensors.torch import save_file

WRAPPERS = ("state_dict", "model", "teacher", "student")
PREFIXES = ("module.", "backbone.")


def unwrap(obj, key=None):
    if key:
        return obj[key]
    for k in WRAPPERS:
        if isinstance(obj, dict) and k in obj and isinstance(obj[k], dict):
            return obj[k]
    return obj


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--key", help="take the weights from this entry of the checkpoint dict")
    args = ap.parse_args()
    obj = torch.load(args.src, map_location="cpu", weights_only=True)
    state = unwrap(obj, args.key)
    if not isinstance(state, dict):
        sys.exit(f"{args.src}: no state dict found (top-level keys: {list(obj)[:10]}); pass --key")
    out = {}
    for name, tensor in state.items():
        if not torch.is_tensor(tensor):
            continue
        for p in PREFIXES:
            if name.startswith(p):
                name = name[len(p):]
        out[name] = tensor.contiguous()
    save_file(out, args.dst)
    print(f"wrote {len(out)} tensors to {args.dst}")


if __name__ == "__main__":
    main()
