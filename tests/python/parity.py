"""PyTorch side of tests/pytorch_parity.rs.

usage: parity.py ARCH NUM_CLASSES IMAGE_SIZE DIR

Reads DIR/ours.safetensors (weights written by nave-lab) and DIR/input.safetensors
(tensor "x"), then:
  1. loads our weights into torchvision's / timm's model with strict=True and
     writes its logits for x to DIR/theirs_on_ours.safetensors ("logits");
  2. builds the reference model with its own seeded initialisation, writes its
     state_dict to DIR/reference.safetensors and its logits for x to
     DIR/reference_logits.safetensors, for nave-lab to load and compare.
"""
import sys

import timm
import torch
import torchvision
from safetensors.torch import load_file, save_file

arch, num_classes, image_size, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
torch.manual_seed(0)


def build():
    if arch == "resnet18":
        return torchvision.models.resnet18(num_classes=num_classes)
    if arch == "resnet50":
        return torchvision.models.resnet50(num_classes=num_classes)
    if arch.startswith("vit_s") or arch.startswith("vit_b"):
        patch = 16 if arch[5:7] == "16" else 14
        # ViT-S 384 wide with 6 heads, ViT-B 768 with 12.
        width = 384 if arch.startswith("vit_s") else 768
        # _ls: with LayerScale, as DINOv2 (gammas at 0.5 so that they matter).
        init_values = 0.5 if "_ls" in arch else None
        # _regN: N register tokens, as timm's register models (patch-only
        # position embeddings).
        registers = int(arch.split("_reg")[1]) if "_reg" in arch else 0
        return timm.models.vision_transformer.VisionTransformer(
            img_size=image_size, patch_size=patch, embed_dim=width, depth=12, num_heads=width // 64, num_classes=num_classes,
            init_values=init_values, reg_tokens=registers, no_embed_class=registers > 0
        )
    raise SystemExit(f"unknown arch {arch}")


x = load_file(f"{out}/input.safetensors")["x"]

model = build().eval()
missing_unexpected = model.load_state_dict(load_file(f"{out}/ours.safetensors"), strict=True)
with torch.no_grad():
    save_file({"logits": model(x).contiguous()}, f"{out}/theirs_on_ours.safetensors")

reference = build().eval()
with torch.no_grad():
    # Non-trivial BatchNorm statistics, so that eval mode is really tested.
    for m in reference.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, f"{out}/reference.safetensors")
    save_file({"logits": reference(x).contiguous()}, f"{out}/reference_logits.safetensors")
print("ok", arch)
