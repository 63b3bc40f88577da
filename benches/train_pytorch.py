"""PyTorch eager training throughput, the baseline of `nave-lab bench train`.

    target/release/nave-lab --device cpu bench train --arch resnet18 --image-size 96 --batch-size 64
    .venv-ref/bin/python benches/train_pytorch.py --arch resnet18 --image-size 96 --batch-size 64

On CUDA, with the switches nave-lab has (bf16 autocast, channels-last):

    nave-lab --device cuda bench train --arch resnet50 --image-size 224 --mixed-precision --memory-format channels-last
    python benches/train_pytorch.py --device cuda --arch resnet50 --image-size 224 --bf16 --channels-last

Same model (torchvision's; ViT-S/16 is torchvision's VisionTransformer at
ViT-S's size: 12 blocks, 6 heads, width 384, MLP 1536), batch, image size,
optimiser (SGD, momentum 0.9, weight decay 1e-4, foreach as torch's default on
CUDA), cuDNN autotuning on CUDA (as nave-lab) and thread count
(torch.get_num_threads(), as libtorch's).
"""
import argparse
import contextlib
import json
import time

import torch
import torchvision

ap = argparse.ArgumentParser()
ap.add_argument("--arch", default="resnet18", choices=["resnet18", "resnet50", "vit_s16"])
ap.add_argument("--image-size", type=int, default=96)
ap.add_argument("--batch-size", type=int, default=64)
ap.add_argument("--steps", type=int, default=20)
ap.add_argument("--device", default="cpu")
ap.add_argument("--no-optimizer", action="store_true", help="time forward and backward only")
ap.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA only, as nave-lab's --mixed-precision)")
ap.add_argument("--channels-last", action="store_true", help="model and batch in channels-last memory (ResNets)")
args = ap.parse_args()

torch.manual_seed(0)
cuda = args.device.startswith("cuda")
if cuda:
    torch.backends.cudnn.benchmark = True
if args.arch == "vit_s16":
    model = torchvision.models.VisionTransformer(image_size=args.image_size, patch_size=16, num_layers=12, num_heads=6,
                                                 hidden_dim=384, mlp_dim=1536, num_classes=10)
else:
    model = getattr(torchvision.models, args.arch)(num_classes=10)
channels_last = args.channels_last and args.arch != "vit_s16"
model = model.to(args.device).train()
x = torch.randn(args.batch_size, 3, args.image_size, args.image_size, device=args.device)
if channels_last:
    model = model.to(memory_format=torch.channels_last)
    x = x.contiguous(memory_format=torch.channels_last)
opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
y = torch.randint(0, 10, (args.batch_size,), device=args.device)
amp = args.bf16 and cuda
autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if amp else contextlib.nullcontext


def step():
    with autocast():
        logits = model(x)
    loss = torch.nn.functional.cross_entropy(logits.float(), y)
    opt.zero_grad()
    loss.backward()
    if not args.no_optimizer:
        opt.step()


for _ in range(3):
    step()
if cuda:
    torch.cuda.synchronize()
start = time.perf_counter()
for _ in range(args.steps):
    step()
if cuda:
    torch.cuda.synchronize()
seconds = time.perf_counter() - start
print(json.dumps({"bench": "train_pytorch", "arch": args.arch, "device": args.device, "threads": torch.get_num_threads(),
                  "image_size": args.image_size, "batch_size": args.batch_size, "mixed_precision": amp,
                  "memory_format": "channels-last" if channels_last else "NCHW", "optimizer": not args.no_optimizer,
                  "steps": args.steps, "seconds": seconds, "images_per_s": args.steps * args.batch_size / seconds}, indent=2))
