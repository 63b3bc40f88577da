"""The first author's NAVE localisation evaluation (VOC_eval, main_nave.py
with --centered_boxes, its resnet50 built by networks.py), restated step by
step in plain NumPy/PyTorch as that code computes it, so that nave-lab's
`localize --protocol author` can be checked against it:

  * images: ToTensor + ImageNet normalisation, no resize, zero-padded on the
    right and bottom to a multiple of 16;
  * torchvision's ResNet50 with replace_stride_with_dilation=[F, F, T]; the
    taps (stages 0-4) bicubically resized to the first tap's grid, each
    L2-normalised over channels and weighted C0/(1+Ci) / (C0/(1+C0));
  * scikit-learn KMeans (k-means++, n_init starts), labels resized to the
    padded image with nearest neighbour (OpenCV's floor(i * src / dst));
  * per cluster (ascending), 4-connected components (raster numbering, as
    skimage.measure.label(connectivity=1) and scipy.ndimage.label number
    them), kept when > 784 pixels, then a 14-px frame cleared on every
    component, empty ones dropped;
  * inner ("centred") box from int(median) and the nearer extreme, clipped
    to the padded map; the (gt, component) pair with the best inner-box IoU
    (torch argmax: first maximum, gt major); found when the outer box's IoU
    with that gt box is > 0.5; IoU as bbox_iou computes it on int64 boxes
    (float32, 1e-7 guards);
  * an image without ground truth (COCO crowd-only) or without a component
    is a miss, as LOST counts it.

Usage:
  author_localize.py --dataset voc07|coco20k --root DIR --weights W.safetensors
      [--layers 2] [-k 5] [--seeds 0 1 2 3] [--n-init 10] --out OUT.json
      [--maps MAPS.json]   label maps of the first seed, in image order
      [--features F.safetensors]  layer2/layer4 of the first image
  author_localize.py --make-weights W.safetensors [--seed 0]
      seeded random torchvision ResNet50 weights
"""
import argparse
import json
import os
import xml.etree.ElementTree as ET

import numpy as np
import torch
import torch.nn as nn
import torchvision
from PIL import Image
from safetensors.torch import load_file, save_file
from scipy import ndimage
from sklearn.cluster import KMeans

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
PATCH = 16


def voc_items(root):
    base = os.path.join(root, "VOCdevkit", "VOC2007")
    ids = [l.strip() for l in open(os.path.join(base, "ImageSets/Main/trainval.txt")) if l.strip()]
    items = []
    for i in ids:
        tree = ET.parse(os.path.join(base, "Annotations", i + ".xml"))
        boxes = []
        for obj in tree.getroot().iter("object"):
            b = obj.find("bndbox")
            boxes.append([int(b.find("xmin").text) - 1, int(b.find("ymin").text) - 1,
                          int(b.find("xmax").text), int(b.find("ymax").text)])
        items.append((i, os.path.join(base, "JPEGImages", i + ".jpg"), boxes))
    return items


def coco_items(root):
    ann = json.load(open(os.path.join(root, "annotations", "instances_train2014.json")))
    names = [l.strip() for l in open(os.path.join(root, "coco_20k_filenames.txt")) if l.strip()]
    items = []
    for name in names:
        image_id = int(name.split("_")[-1].split(".")[0])
        boxes = []
        for a in ann["annotations"]:
            if a["image_id"] != image_id or a["iscrowd"] == 1:
                continue
            x, y, w, h = a["bbox"]
            boxes.append([int(round(v)) for v in (x, y, x + w, y + h)])
        items.append((str(image_id), os.path.join(root, "images", name), boxes))
    return items


def prepare(path):
    img = Image.open(path).convert("RGB")
    x = torchvision.transforms.functional.to_tensor(img)
    x = torchvision.transforms.functional.normalize(x, MEAN, STD)
    _, h, w = x.shape
    hp, wp = -(-h // PATCH) * PATCH, -(-w // PATCH) * PATCH
    padded = torch.zeros((3, hp, wp))
    padded[:, :h, :w] = x
    return padded[None]


def build_model(weights):
    model = torchvision.models.resnet50(replace_stride_with_dilation=[False, False, True])
    model.load_state_dict(load_file(weights))
    model.eval()
    return nn.Sequential(*list(model.children())[:-2])


def taps(features, x, layers):
    """Stage outputs (0 = after the max-pool) resized to the first tap's grid."""
    out, size = [], None
    with torch.inference_mode():
        z = x
        for i in range(4):
            z = features[i](z)
        stages = [z]
        # The stages after the deepest tap change nothing: not run.
        for i in range(4, 4 + max(layers)):
            z = features[i](z)
            stages.append(z)
    for stage in sorted(layers):
        z = stages[stage]
        if size is None:
            size = list(z.shape[-2:])
        out.append(nn.Upsample(size=size, mode="bicubic")(z).flatten(-2))
    return out, size


def nave_labels(features, x, layers, k, seed, n_init):
    path, size = taps(features, x, layers)
    channels = np.array([p.shape[1] for p in path])
    weights = channels[0] / (1 + channels)
    weights = weights / weights[0]
    parts = [p / torch.sqrt(torch.sum(p ** 2, 1))[:, None] * weights[i] for i, p in enumerate(path)]
    rows = torch.cat(parts, 1)[0].T.numpy()  # [h*w, D]
    labels = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit_predict(rows)
    grid = labels.reshape(size)
    hp, wp = x.shape[-2:]
    ys = np.minimum(np.arange(hp) * size[0] // hp, size[0] - 1)
    xs = np.minimum(np.arange(wp) * size[1] // wp, size[1] - 1)
    return grid[ys][:, xs]


def components(sppx):
    h, w = sppx.shape
    found = []
    for value in np.unique(sppx):
        numbered, n = ndimage.label(sppx == value)  # 4-connectivity in 2-D
        for i in range(1, n + 1):
            mask = numbered == i
            if mask.sum() > 14 * 14 * 4:
                found.append(mask.copy())
    kept = []
    for mask in found:
        mask[:, :14] = False
        mask[:, w - 14:] = False
        mask[:14, :] = False
        mask[h - 14:, :] = False
        if mask.any():
            kept.append(mask)
    return kept


def bbox_iou(box, gt):
    """bbox_iou on int64 tensors: integer intersection, float32 elsewhere."""
    b1 = torch.as_tensor(np.asarray(box, dtype=np.int64))
    b2 = torch.as_tensor(np.asarray(gt, dtype=np.int64))
    inter = (torch.min(b1[2], b2[2]) - torch.max(b1[0], b2[0])).clamp(0) * \
        (torch.min(b1[3], b2[3]) - torch.max(b1[1], b2[1])).clamp(0)
    w1, h1 = b1[2] - b1[0], b1[3] - b1[1] + 1e-7
    w2, h2 = b2[2] - b2[0], b2[3] - b2[1] + 1e-7
    return (inter / (w1 * h1 + w2 * h2 - inter + 1e-7)).item()


def select(sppx, gt):
    h, w = sppx.shape
    comps = components(sppx)
    if not gt or not comps:
        return {"found": False, "box": None, "gt": None, "inner_iou": None, "iou": 0.0}
    inner, outer = [], []
    for m in comps:
        ys, xs = np.nonzero(m)
        cx, cy = int(np.median(xs)), int(np.median(ys))
        dx = int(min(abs(cx - xs.min()), abs(cx - xs.max())))
        dy = int(min(abs(cy - ys.min()), abs(cy - ys.max())))
        inner.append([np.clip(cx - dx, 0, w), np.clip(cy - dy, 0, h),
                      np.clip(cx + dx, 0, w), np.clip(cy + dy, 0, h)])
        outer.append([xs.min(), ys.min(), xs.max(), ys.max()])
    ious = torch.zeros((len(gt), len(comps)))
    for g in range(len(gt)):
        for c in range(len(comps)):
            ious[g, c] = bbox_iou(inner[c], gt[g])
    flat = ious.argmax().item()
    g, c = flat // len(comps), flat % len(comps)
    iou = bbox_iou(outer[c], gt[g])
    return {"found": bool(iou > 0.5), "box": [int(v) for v in outer[c]], "gt": int(g),
            "inner_iou": float(ious[g, c].item()), "iou": iou}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dataset", choices=["voc07", "coco20k"])
    p.add_argument("--root")
    p.add_argument("--weights")
    p.add_argument("--layers", type=int, nargs="+", default=[2])
    p.add_argument("-k", type=int, default=5)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--n-init", type=int, default=10)
    p.add_argument("--out")
    p.add_argument("--maps")
    p.add_argument("--features")
    p.add_argument("--make-weights")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))

    if a.make_weights:
        torch.manual_seed(a.seed)
        model = torchvision.models.resnet50()
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, a.make_weights)
        return

    items = voc_items(a.root) if a.dataset == "voc07" else coco_items(a.root)
    features = build_model(a.weights)
    if a.features:
        x = prepare(items[0][1])
        with torch.inference_mode():
            z = x
            for i in range(6):
                z = features[i](z)
            layer2 = z
            for i in range(6, 8):
                z = features[i](z)
        save_file({"layer2": layer2.contiguous(), "layer4": z.contiguous()}, a.features)
    out, maps = {}, []
    for n, seed in enumerate(a.seeds):
        per_image = []
        for image_id, path, gt in items:
            x = prepare(path)
            sppx = nave_labels(features, x, a.layers, a.k, seed, a.n_init)
            r = select(sppx, gt)
            r["image"] = image_id
            per_image.append(r)
            if n == 0 and a.maps:
                maps.append({"image": image_id, "h": int(sppx.shape[0]), "w": int(sppx.shape[1]),
                             "labels": sppx.flatten().tolist(), "gt": gt})
        out[str(seed)] = {"corloc": 100.0 * np.mean([r["found"] for r in per_image]),
                          "images": per_image}
    json.dump(out, open(a.out, "w"))
    if a.maps:
        json.dump(maps, open(a.maps, "w"))


if __name__ == "__main__":
    main()
