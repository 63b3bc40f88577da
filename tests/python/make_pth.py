"""Writes a torchvision ResNet18 state dict as a DataParallel-style checkpoint
({"state_dict": {"module.<name>": tensor}}) for the converter test, and the
logits of that model for a fixed input.

usage: make_pth.py OUT_DIR"""
import sys

import torch
import torchvision
from safetensors.torch import load_file, save_file

out = sys.argv[1]
torch.manual_seed(0)
model = torchvision.models.resnet18(num_classes=7).eval()
torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, f"{out}/ckpt.pth")
x = torch.randn(1, 3, 64, 64)
save_file({"x": x}, f"{out}/input.safetensors")
with torch.no_grad():
    save_file({"logits": model(x).contiguous()}, f"{out}/logits.safetensors")
