"""PyTorch's SGD (momentum) and AdamW on fixed parameters and gradients, the
counterpart of tests/pytorch_parity.rs::optimizers_match_pytorch.

    python optimizers.py sgd|adamw  -> the parameters after 4 steps, as JSON
"""
import json
import math
import sys

import torch

kind = sys.argv[1]
shapes = [(3, 4), (5,)]
params = [
    torch.tensor([math.sin(0.7 * i + j) for i in range(math.prod(s))], dtype=torch.float64).reshape(s).requires_grad_()
    for j, s in enumerate(shapes)
]
if kind == "sgd":
    opt = torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=0.01, foreach=True)
else:
    opt = torch.optim.AdamW(params, lr=0.01, betas=(0.9, 0.99), weight_decay=0.05, foreach=True)
for t in range(1, 5):
    for j, p in enumerate(params):
        p.grad = torch.tensor([math.cos(1.3 * i * t + j) for i in range(p.numel())], dtype=torch.float64).reshape(p.shape)
    opt.step()
print(json.dumps([p.detach().flatten().tolist() for p in params]))
