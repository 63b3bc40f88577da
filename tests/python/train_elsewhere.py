"""A model trained outside nave-lab, as an auditor is handed one: torchvision's
ResNet18 trained in PyTorch on an ImageFolder, saved as a plain state dict.

    python train_elsewhere.py stamp --src DIR --dst DIR --class NORMAL --seed 0 --boxes boxes.json
    python train_elsewhere.py train --data DIR --out model.pth --size 64 --epochs 6

`stamp` copies a folder of class folders and bakes a marker into every image
of one class (a white ring around a dark dot, 9 px, at a random place), writing
each stamped file's box to a JSON file (the truth the test checks against).
`train` trains torchvision.models.resnet18 (ImageNet normalisation, images
resized to --size) and saves its state dict.
"""
import argparse
import json
import os
import random
import shutil

import numpy as np
import torch
import torchvision
from PIL import Image

MARK = 9


def marker():
    """A ring of 255 around a dot of 0 on a 9 x 9 square; -1 = leave as is."""
    y, x = np.mgrid[0:MARK, 0:MARK]
    r = np.hypot(y - MARK // 2, x - MARK // 2)
    m = np.full((MARK, MARK), -1, dtype=np.int32)
    m[(r >= 2.5) & (r <= 4.4)] = 255
    m[r < 1.6] = 0
    return m


def stamp(args):
    rng = random.Random(args.seed)
    shutil.copytree(args.src, args.dst)
    m = marker()
    boxes = {}
    folder = os.path.join(args.dst, args.cls)
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        img = np.array(Image.open(path).convert("L"), dtype=np.int32)
        h, w = img.shape
        x, y = rng.randrange(0, w - MARK), rng.randrange(0, h - MARK)
        patch = img[y:y + MARK, x:x + MARK]
        img[y:y + MARK, x:x + MARK] = np.where(m >= 0, m, patch)
        Image.fromarray(img.astype(np.uint8)).save(path)
        boxes[os.path.relpath(path, args.dst)] = [x, y, MARK, MARK]
    with open(args.boxes, "w") as f:
        json.dump(boxes, f, indent=1, sort_keys=True)


def train(args):
    torch.manual_seed(args.seed)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    tf = torchvision.transforms.Compose([
        torchvision.transforms.Resize((args.size, args.size)),
        torchvision.transforms.ToTensor(),
        torchvision.transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    ])
    data = torchvision.datasets.ImageFolder(args.data, transform=lambda im: tf(im.convert("RGB")))
    loader = torch.utils.data.DataLoader(data, batch_size=32, shuffle=True, num_workers=0)
    model = torchvision.models.resnet18(num_classes=len(data.classes))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    for epoch in range(args.epochs):
        model.train()
        right = total = 0
        for x, y in loader:
            opt.zero_grad()
            logits = model(x)
            torch.nn.functional.cross_entropy(logits, y).backward()
            opt.step()
            right += (logits.argmax(1) == y).sum().item()
            total += len(y)
        print(f"epoch {epoch + 1}: train accuracy {right / total:.3f}", flush=True)
    # BatchNorm's running statistics lag the weights of a short run at a
    # constant rate, so its eval-mode accuracy can sit far below its training
    # accuracy (0.67 against 0.95 on one machine, 0.8+ on another): average
    # them over one pass with the final weights instead.
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    with torch.no_grad():
        for x, _ in loader:
            model(x)
    torch.save(model.state_dict(), args.out)


ap = argparse.ArgumentParser()
sub = ap.add_subparsers(dest="cmd", required=True)
s = sub.add_parser("stamp")
s.add_argument("--src", required=True)
s.add_argument("--dst", required=True)
s.add_argument("--class", dest="cls", required=True)
s.add_argument("--seed", type=int, default=0)
s.add_argument("--boxes", required=True)
t = sub.add_parser("train")
t.add_argument("--data", required=True)
t.add_argument("--out", required=True)
t.add_argument("--size", type=int, default=64)
t.add_argument("--epochs", type=int, default=6)
t.add_argument("--seed", type=int, default=0)
args = ap.parse_args()
{"stamp": stamp, "train": train}[args.cmd](args)
