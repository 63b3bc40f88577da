#!/usr/bin/env python3
"""Draws the artefact pictures shipped in experiments/patches/ (standard library only).

    python3 scripts/make-patches.py

- marker-L.png: a laterality marker, a white "L" with a dark outline on a
  transparent background, as radiographers place on films.
- ruler.png: a light ruler with tick marks, translucent.
"""
import pathlib
import struct
import zlib

OUT = pathlib.Path(__file__).resolve().parent.parent / "experiments" / "patches"

# 5 x 7 glyph, '#' = ink.
L_GLYPH = [
    "#....",
    "#....",
    "#....",
    "#....",
    "#....",
    "#....",
    "#####",
]


def write_png(path, width, height, rgba):
    """rgba: rows of (r, g, b, a) tuples."""
    raw = b"".join(b"\x00" + bytes(v for px in row for v in px) for row in rgba)
    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)
    png = b"\x89PNG\r\n\x1a\n"
    png += chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw, 9))
    png += chunk(b"IEND", b"")
    path.write_bytes(png)


def marker(glyph, scale=6, pad=2):
    h, w = len(glyph), len(glyph[0])
    H, W = (h + 2 * pad) * scale // 2, (w + 2 * pad) * scale // 2
    ink = [[False] * W for _ in range(H)]
    for y in range(H):
        for x in range(W):
            gy, gx = (2 * y) // scale - pad, (2 * x) // scale - pad
            ink[y][x] = 0 <= gy < h and 0 <= gx < w and glyph[gy][gx] == "#"
    rows = []
    for y in range(H):
        row = []
        for x in range(W):
            near = any(
                ink[yy][xx]
                for yy in range(max(0, y - 2), min(H, y + 3))
                for xx in range(max(0, x - 2), min(W, x + 3))
            )
            if ink[y][x]:
                row.append((255, 255, 255, 255))
            elif near:
                row.append((20, 20, 20, 255))
            else:
                row.append((0, 0, 0, 0))
        rows.append(row)
    return W, H, rows


def ruler(width=60, height=12):
    rows = []
    for y in range(height):
        row = []
        for x in range(width):
            edge = y in (0, height - 1) or x in (0, width - 1)
            tick = x % 6 == 0 and y < (height // 2 if x % 30 else height - 2)
            if edge or tick:
                row.append((40, 40, 40, 255))
            else:
                row.append((235, 225, 190, 200))
        rows.append(row)
    return width, height, rows


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    write_png(OUT / "marker-L.png", *marker(L_GLYPH))
    write_png(OUT / "ruler.png", *ruler())
    print("wrote", ", ".join(str(p) for p in sorted(OUT.glob("*.png"))))
