"""A model on a device: uint8 pixels in, class probabilities out (the predictor's model, the
benchmarks' and the training loop's normalisation), and the probe that picks a batch size for it.

Everything here needs torch; the Ray stage around it (recog.predict) does not, so that a job's
driver, which only plans and commits, never imports torch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from recog import preprocess
from recog.models.builder import build
from recog.models.lite0 import fold_batch_norms
from recog.models.registry import ModelSpec
from recog.storage import StorageOptions


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def normalizer(prep, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std scaled to uint8 range: x_norm = (x_uint8 - 255*mean) / (255*std)."""
    mean = torch.tensor(prep.mean, device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor(prep.std, device=device).view(1, 3, 1, 1) * 255
    return mean, std


def to_model_input(pixels: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """(N, H, W, 3) uint8 on the device -> normalised float NCHW, channels-last in memory."""
    x = pixels.permute(0, 3, 1, 2).float().sub_(mean).div_(std)
    return x.contiguous(memory_format=torch.channels_last)


class Classifier:
    """A model on a device that turns uint8 NHWC pixels into class probabilities."""

    def __init__(self, spec: ModelSpec, opts: StorageOptions, device: str = "auto", threads: int | None = None,
                 compile: bool = False, net: torch.nn.Module | None = None, fold: bool = True):
        """`net`, if given, is used instead of building `spec`'s network (benchmarks: random weights);
        `fold`: batch norms folded into their convolutions (lite0.fold_batch_norms; benchmarks compare)."""
        if threads:
            torch.set_num_threads(threads)
        self.device = pick_device(device)
        net = build(spec, opts) if net is None else net.eval()
        if fold:
            fold_batch_norms(net)
        self.model = net.to(self.device, memory_format=torch.channels_last)
        if compile:
            self.model = torch.compile(self.model)
        self.mean, self.std = normalizer(spec.preprocessing, self.device)
        self.amp = self.device.type == "cuda"
        self.prep = spec.preprocessing

    def upload(self, pixels: np.ndarray) -> torch.Tensor:
        """uint8 pixels onto the device: a quarter of the bytes a float copy would be."""
        x = torch.from_numpy(pixels)
        if self.device.type == "cuda":
            x = x.pin_memory().to(self.device, non_blocking=True)
        return x

    @torch.inference_mode()
    def probabilities(self, pixels: np.ndarray | torch.Tensor) -> np.ndarray:
        """(N, H, W, 3) uint8, in memory or on the device -> (N, classes) float32 probabilities; a
        network with two heads gives each head's, side by side."""
        x = self.upload(pixels) if isinstance(pixels, np.ndarray) else pixels
        x = to_model_input(x, self.mean, self.std)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            logits = self.model(x)
        heads = logits if isinstance(logits, tuple) else (logits,)
        return torch.cat([torch.softmax(h.float(), dim=1) for h in heads], dim=1).cpu().numpy()

    def decode_jpegs(self, datas: list[bytes]) -> tuple[torch.Tensor, list[str | None]]:
        """JPEG bytes -> model-ready pixels on this device (nvJPEG on a GPU) and an error per image
        or None; timed alone (the GPU finishes before it returns), not with the model after it."""
        pixels, failed = preprocess.decode_jpegs(datas, self.prep, self.device)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return pixels, failed


@dataclass
class BatchProbe:
    """What `probe_batch_size` chose, and what it saw: (batch, images/s, peak memory fraction) tried."""

    batch: int
    tried: list[tuple[int, float, float | None]]
    reason: str
    seconds: list[float] = field(default_factory=list)  # each size's cost, warm-up included: where a probe's time goes

    def to_dict(self) -> dict:
        return {"batch": self.batch, "tried": [list(t) for t in self.tried], "reason": self.reason, "seconds": self.seconds}


def probe_batch_size(classifier: Classifier, size: int, start: int, limit: int, gain: float = 1.05,
                     headroom: float = 0.8, min_s: float = 0.3) -> BatchProbe:
    """The batch this classifier should run at on its device: from `start`, double while doubling
    raises images/s by at least `gain` and the peak memory stays within `headroom` of the device's
    (a GPU), up to `limit`. Random pixels; about `min_s` per size tried."""
    cuda = classifier.device.type == "cuda"
    total = torch.cuda.get_device_properties(classifier.device).total_memory if cuda else None
    tried: list[tuple[int, float, float | None]] = []
    seconds: list[float] = []

    def measure(batch: int) -> tuple[float, float | None]:
        started = time.perf_counter()
        pixels = torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8, device=classifier.device)
        if cuda:
            torch.cuda.reset_peak_memory_stats(classifier.device)
        classifier.probabilities(pixels)  # warm-up (and cuDNN's choice of kernels for this shape)
        calls, t0 = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - t0) < min_s or calls < 2:
            classifier.probabilities(pixels)
            calls += 1
        peak = torch.cuda.max_memory_allocated(classifier.device) / total if cuda else None
        seconds.append(round(time.perf_counter() - started, 3))
        return calls * batch / elapsed, peak

    batch, reason = start, f"the largest tried ({limit})"
    rate, peak = measure(batch)
    tried.append((batch, round(rate, 1), peak and round(peak, 3)))
    while batch * 2 <= limit:
        try:
            bigger, bigger_peak = measure(batch * 2)
        except torch.OutOfMemoryError:
            torch.cuda.empty_cache()
            reason = f"batch {batch * 2} ran out of device memory"
            break
        tried.append((batch * 2, round(bigger, 1), bigger_peak and round(bigger_peak, 3)))
        if bigger_peak is not None and bigger_peak > headroom:
            reason = f"batch {batch * 2} used {bigger_peak:.0%} of device memory (more than {headroom:.0%})"
            break
        if bigger < gain * rate:
            reason = f"batch {batch * 2} was not {gain - 1:.0%} faster ({bigger:,.0f} against {rate:,.0f} images/s)"
            break
        batch, rate = batch * 2, bigger
    return BatchProbe(batch, tried, reason, seconds)


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


