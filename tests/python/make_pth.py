"""Writes a torchvision ResNet18 state dict as a DataParallel-style checkpoint
({"state_dict": {"module.<name>": tensor}}) for the converter test, the same
weights plain (plain.pth) and as DINO keeps them ({"teacher": {"backbone.<name>"},
with an epoch and optimiser state beside}, teacher.pth), a checkpoint with no
tensors (empty.pth), and the logits of that model for a fixed input.

usage: make_pth.py OUT_DIR"""
import sys

import torch
import torchvision
from safetensors.torch import load_file, save_file

out = sys.argv[1]
torch.manual_seed(0)
model = torchvision.models.resnet18(num_classes=7).eval()
torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, f"{out}/ckpt.pth")
torch.save(model.state_dict(), f"{out}/plain.pth")
torch.save({"epoch": 100, "optimizer": {"state": {0: {"momentum_buffer": torch.zeros(3)}}, "param_groups": [{"lr": 0.1}]},
            "teacher": {f"backbone.{k}": v for k, v in model.state_dict().items()}}, f"{out}/teacher.pth")
torch.save({"epoch": 1, "note": "no weights"}, f"{out}/empty.pth")
x = torch.randn(1, 3, 64, 64)
save_file({"x": x}, f"{out}/input.safetensors")
with torch.no_grad():
    save_file({"logits": model(x).contiguous()}, f"{out}/logits.safetensors")

# ResNet50 and ViT-S/16 as plain state dicts (OrderedDicts), with their logits
# on the same input.
import timm

for name, net in [
    ("r50", torchvision.models.resnet50(num_classes=5)),
    ("vits", timm.models.vision_transformer.VisionTransformer(
        img_size=64, patch_size=16, embed_dim=384, depth=12, num_heads=6, num_classes=3)),
]:
    net = net.eval()
    torch.save(net.state_dict(), f"{out}/{name}.pth")
    with torch.no_grad():
        save_file({"logits": net(x).contiguous()}, f"{out}/{name}_logits.safetensors")
