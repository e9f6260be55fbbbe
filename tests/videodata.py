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
