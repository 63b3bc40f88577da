"""PyTorch eager training throughput, the baseline of `nave-lab bench train`.

    target/release/nave-lab --device cpu bench train --arch resnet18 --image-size 96 --batch-size 64
    .venv-ref/bin/python benches/train_pytorch.py --arch resnet18 --image-size 96 --batch-size 64

Same model (torchvision), batch, image size, optimiser (SGD, momentum 0.9,
weight decay 1e-4) and thread count (torch.get_num_threads(), as libtorch's).
"""
import argparse
import json
import time

import torch
import torchvision

ap = argparse.ArgumentParser()
ap.add_argument("--arch", default="resnet18", choices=["resnet18", "resnet50"])
ap.add_argument("--image-size", type=int, default=96)
ap.add_argument("--batch-size", type=int, default=64)
ap.add_argument("--steps", type=int, default=20)
ap.add_argument("--device", default="cpu")
ap.add_argument("--no-optimizer", action="store_true", help="time forward and backward only")
args = ap.parse_args()

torch.manual_seed(0)
model = getattr(torchvision.models, args.arch)(num_classes=10).to(args.device).train()
opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
x = torch.randn(args.batch_size, 3, args.image_size, args.image_size, device=args.device)
y = torch.randint(0, 10, (args.batch_size,), device=args.device)


def step():
    loss = torch.nn.functional.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    if not args.no_optimizer:
        opt.step()


for _ in range(3):
    step()
if args.device.startswith("cuda"):
    torch.cuda.synchronize()
start = time.perf_counter()
for _ in range(args.steps):
    step()
if args.device.startswith("cuda"):
    torch.cuda.synchronize()
seconds = time.perf_counter() - start
print(json.dumps({"bench": "train_pytorch", "arch": args.arch, "threads": torch.get_num_threads(), "image_size": args.image_size,
                  "batch_size": args.batch_size, "optimizer": not args.no_optimizer, "steps": args.steps, "seconds": seconds,
                  "images_per_s": args.steps * args.batch_size / seconds}, indent=2))
