"""A small image classification problem the tests make: coloured discs on grey noise."""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageDraw

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (40, 60, 220)}


def disc_folder(root: Path, per_class: int, seed: int) -> Path:
    """`root/<colour>/<n>.jpg`: one disc of that colour per image, placed and tinted at random."""
    rng = random.Random(seed)
    for name, colour in COLOURS.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = Image.new("RGB", (80, 80), tuple(rng.randrange(90, 160) for _ in range(3)))
            x, y = rng.randrange(0, 40), rng.randrange(0, 40)
            tint = tuple(max(0, min(255, c + rng.randrange(-30, 30))) for c in colour)
            ImageDraw.Draw(img).ellipse((x, y, x + 35, y + 35), fill=tint)
            img.save(root / name / f"{i:03d}.jpg", quality=90)
    return root
