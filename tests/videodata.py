"""Videos the tests encode themselves, with known frame counts, rates and keyframe spacing."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def encode_video(path: Path, frames: int = 250, fps: int = 25, codec: str = "libx264", gop: int = 50,
                 size: tuple[int, int] = (96, 64), faststart: bool = False) -> Path:
    """Frame i shows grey level (i * 7) % 256; a keyframe every `gop` frames; timestamps i / fps."""
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = gop
        if codec == "libx264":
            stream.codec_context.options = {"keyint_min": str(gop), "sc_threshold": "0", "bf": "2"}
        stream.time_base = Fraction(1, fps)
        for i in range(frames):
            img = np.full((size[1], size[0], 3), (i * 7) % 256, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def road_scene(seed: int = 0, size: tuple[int, int] = (320, 240)) -> np.ndarray:
    """A blurred noise texture: a fixed camera's empty scene (BGR)."""
    import cv2

    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.integers(60, 160, (size[1], size[0], 3)).astype(np.uint8), (0, 0), 3)


def traffic_video(path: Path, frames: int, vehicles=(), gain=lambda i: 1.0, fps: int = 25, seed: int = 1) -> Path:
    """A fixed camera over `road_scene`, with camera noise: each vehicle (first frame, x, width,
    height, pixels per frame, BGR colour) is a box driving down the picture from above its top;
    `gain(i)` scales frame i's brightness (a lighting change)."""
    import cv2

    rng, scene = np.random.default_rng(seed), road_scene()
    images = []
    for i in range(frames):
        img = scene.astype(np.float32) * gain(i)
        img = np.clip(img, 0, 255).astype(np.uint8)
        for start, x, w, h, speed, colour in vehicles:
            if i >= start:
                y = int(-h + (i - start) * speed)
                cv2.rectangle(img, (x, y), (x + w, y + h), colour, -1)
        images.append(np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8))
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = scene.shape[1], scene.shape[0], "yuv420p"
        for img in images:
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="bgr24")):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path
