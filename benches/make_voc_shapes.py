"""Writes a VOC2007-layout folder of generated "shapes" images, for timing
`nave-lab localize` where the real VOC07 cannot be downloaded (a GPU machine
without internet). The scores on it mean nothing; the time per image does
(same image sizes as VOC's, about 500x375, one to three objects each).

    python benches/make_voc_shapes.py ROOT [N]      (N default 200)
"""
import random
import sys
from pathlib import Path

from PIL import Image, ImageDraw

root = Path(sys.argv[1])
n = int(sys.argv[2]) if len(sys.argv) > 2 else 200
base = root / "VOCdevkit" / "VOC2007"
for d in ("JPEGImages", "Annotations", "ImageSets/Main"):
    (base / d).mkdir(parents=True, exist_ok=True)
rng = random.Random(0)
ids = []
for i in range(n):
    image_id = f"{i + 1:06d}"
    w, h = rng.choice([(500, 375), (375, 500), (500, 333), (480, 360)])
    img = Image.new("RGB", (w, h), tuple(rng.randrange(0, 90) for _ in range(3)))
    draw = ImageDraw.Draw(img)
    objects = []
    for _ in range(rng.randint(1, 3)):
        bw, bh = rng.randint(w // 6, w // 2), rng.randint(h // 6, h // 2)
        x0, y0 = rng.randrange(0, w - bw), rng.randrange(0, h - bh)
        colour = tuple(rng.randrange(120, 256) for _ in range(3))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape([x0, y0, x0 + bw - 1, y0 + bh - 1], fill=colour)
        objects.append((x0 + 1, y0 + 1, x0 + bw, y0 + bh))  # VOC: 1-based, inclusive
    img.save(base / "JPEGImages" / f"{image_id}.jpg", quality=92)
    xml = [f"<annotation><folder>VOC2007</folder><filename>{image_id}.jpg</filename>",
           f"<size><width>{w}</width><height>{h}</height><depth>3</depth></size>"]
    for x0, y0, x1, y1 in objects:
        xml.append("<object><name>shape</name><truncated>0</truncated><difficult>0</difficult>"
                   f"<bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>")
    xml.append("</annotation>")
    (base / "Annotations" / f"{image_id}.xml").write_text("".join(xml))
    ids.append(image_id)
(base / "ImageSets" / "Main" / "trainval.txt").write_text("".join(i + "\n" for i in ids))
print(f"{n} shapes images in {base}")
