"""Detect: where the vehicles are in a frame, as boxes in the pixels of a small working frame.

- `MotionDetector`, for fixed cameras (the default): OpenCV's MOG2 background subtraction on the
  frame scaled down to `proc_width`, shadow pixels dropped (MOG2 marks them 127), morphology,
  connected components above a minimum area, the optional region of interest. Fragments of one
  vehicle (roof and body split by a dark windscreen) are merged; side-by-side blobs never are
  (adjacent lanes). A frame where most of the picture changes at once (lighting, camera shake) is
  not traffic: its detections are dropped, it is flagged, and the background re-learns fast.
- `LearnedDetector`: a torchvision detection model from a checkpoint the user gives (COCO
  classes; the vehicle classes are kept), for moving cameras or crowded scenes.

Every setting that depends on the picture is relative to the working frame's size or to the
video's frame rate, so that the same defaults serve 320x240 CCTV and 1080p.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# COCO category ids (torchvision's detection models) -> vehicle types
COCO_VEHICLES = {2: "bicycle", 3: "car", 4: "motorcycle", 6: "bus", 8: "truck"}


@dataclass(frozen=True)
class MotionParams:
    """How motion becomes boxes. The reasons for each value are measured on the shared clips
    (bench/vehicles.py and tests/integration/test_vehicles.py count against hand counts)."""

    proc_width: int = 320  # working width: MOG2's cost follows its pixels, not the input's
    history_s: float = 20.0  # background memory; a stopped vehicle is absorbed after ~a tenth of it
    var_threshold: float = 25.0  # squared distance (5 sigma) for foreground; OpenCV's 16 doubles phantoms
    var_min: float = 16.0  # variance floor: at OpenCV's 4, compression noise fills the mask with speckle
    blur_px: int = 5  # against compression blocking
    shadow_tau: float = 0.7  # darker than tau of the background = shadow; 0.5 swallowed dark cars and windscreens
    open_px: int = 3  # opening removes isolated pixels
    close_frac: float = 0.022  # closing kernel, of the working width: fills gaps inside a vehicle
    min_area_frac: float = 0.0008  # smallest blob, of the working frame: ~8x8 px at 320x240, too small to classify below
    merge_ios: float = 0.3  # boxes overlapping by this much of the smaller one are one vehicle
    merge_gap_frac: float = 0.015  # stacked boxes this close (of the width) are a roof/body split
    max_blobs: int = 60  # more blobs than this in one frame is not traffic (rain, flicker)
    max_fg_frac: float = 0.35  # more foreground than this is a global change (lighting, shake)
    relearn_rate: float = 0.05  # MOG2 learning rate while the scene re-settles after a global change
    gain_tol: float = 0.04  # exposure drifts below this are left alone
    colour: bool = True  # on grey frames MOG2's shadow test takes dark car bodies for shadow


def working_size(width: int, height: int, proc_width: int) -> tuple[int, int]:
    """The working frame: at most `proc_width` wide, even dimensions, same aspect."""
    scale = min(1.0, proc_width / width)
    return max(2, int(round(width * scale / 2)) * 2), max(2, int(round(height * scale / 2)) * 2)


def overlapping(a, b, min_ios: float) -> bool:
    """The intersection of boxes a and b covers at least `min_ios` of the smaller one."""
    iw, ih = min(a[2], b[2]) - max(a[0], b[0]), min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0 or min_ios <= 0:
        return False
    return iw * ih >= min_ios * min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))


def stacked(a, b, gap: float) -> bool:
    """One box right above the other (vertical gap at most `gap`, horizontal overlap at least 60 %
    of the narrower): how a vehicle split into roof and body looks. Never side by side."""
    if gap <= 0:
        return False
    iw, ih = min(a[2], b[2]) - max(a[0], b[0]), min(a[3], b[3]) - max(a[1], b[1])
    return iw >= 0.6 * min(a[2] - a[0], b[2] - b[0]) and -gap <= ih <= 0


def merge_fragments(boxes: np.ndarray, areas: np.ndarray, min_ios: float, gap: float) -> tuple[np.ndarray, np.ndarray]:
    """Union the boxes that are fragments of one vehicle (overlapping or stacked), until stable."""
    boxes, areas = [list(b) for b in boxes], list(areas)
    merged = True
    while merged and len(boxes) > 1:
        merged = False
        for i in range(len(boxes)):
            j = next((j for j in range(i + 1, len(boxes)) if overlapping(boxes[i], boxes[j], min_ios)
                      or stacked(boxes[i], boxes[j], gap)), None)
            if j is not None:
                a, b = boxes[i], boxes.pop(j)
                boxes[i] = [min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])]
                areas[i] += areas.pop(j)
                merged = True
                break
    return np.array(boxes, np.float64).reshape(-1, 4), np.array(areas, np.float64)


@dataclass
class Detections:
    """Boxes (N, 4) x1,y1,x2,y2 in working pixels, with a confidence each; and what the frame was."""

    boxes: np.ndarray
    confidence: np.ndarray
    global_change: bool = False  # the whole picture changed: detections dropped

    @classmethod
    def empty(cls, global_change: bool = False) -> "Detections":
        return cls(np.zeros((0, 4)), np.zeros(0), global_change)

    def scaled(self, sx: float, sy: float) -> "Detections":
        return Detections(self.boxes * np.array([sx, sy, sx, sy]), self.confidence, self.global_change)


class MotionDetector:
    """MOG2 background subtraction on working frames (BGR uint8) -> Detections."""

    def __init__(self, size: tuple[int, int], fps: float, params: MotionParams = MotionParams(),
                 roi: np.ndarray | None = None):
        import cv2

        self.cv2, self.p = cv2, params
        self.w, self.h = size
        self.mog = cv2.createBackgroundSubtractorMOG2(history=max(50, int(round(params.history_s * fps))),
                                                      varThreshold=params.var_threshold, detectShadows=True)
        self.mog.setVarMin(params.var_min)
        self.mog.setShadowThreshold(params.shadow_tau)
        self.k_open = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (params.open_px, params.open_px))
        k = max(3, int(round(params.close_frac * self.w))) | 1
        self.k_close = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
        self.min_area = max(4.0, params.min_area_frac * self.w * self.h)
        self.roi = None
        if roi is not None:  # polygon in fractions of the frame
            self.roi = np.zeros((self.h, self.w), np.uint8)
            cv2.fillPoly(self.roi, [np.round(roi * [self.w, self.h]).astype(np.int32)], 255)
        self.roi_pixels = int(np.count_nonzero(self.roi)) if self.roi is not None else self.w * self.h
        self.sample = self.roi[::4, ::4] > 0 if self.roi is not None else np.ones(((self.h + 3) // 4, (self.w + 3) // 4), bool)
        self.frames, self.relearn, self.gain = 0, 0, 1.0
        self.last_mask = self.background = self.block = None

    def _exposure(self, img: np.ndarray, frame_index: int) -> np.ndarray:
        """Undo a camera's exposure change: gain = median, over background pixels only (those MOG2
        called background in the last frame, 4x subsampled), of background / frame. Only frames
        brighter than the background are corrected: darkening is already absorbed by the shadow
        test, and correcting it misfires when a white truck fills the view."""
        cv2 = self.cv2
        # refreshed at the first frame of every 25 that the detector sees: keyed to the frame number,
        # so that segments (and every --analyze-fps) refresh alike
        block = frame_index // 25
        if block != self.block and self.frames > 10:
            bg = self.mog.getBackgroundImage()
            if bg is not None:
                grey = bg if bg.ndim == 2 else cv2.cvtColor(bg, cv2.COLOR_BGR2GRAY)
                self.background = grey[::4, ::4].astype(np.float32) + 1.0
        self.block = block
        if self.background is None:
            return img
        sample = img[::4, ::4]  # the grey of every 4th pixel, not every pixel's grey subsampled: the same values
        grey = sample if sample.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(sample), cv2.COLOR_BGR2GRAY)
        ratio = self.background / (grey.astype(np.float32) + 1.0)
        use = self.sample.copy()
        if self.last_mask is not None:
            still = self.last_mask[::4, ::4] == 0
            if np.count_nonzero(still & use) > 0.2 * np.count_nonzero(use):
                use &= still
        gain = min(float(np.median(ratio[use])), 1.0)
        self.gain = 1.0 if abs(gain - 1) <= self.p.gain_tol else gain
        return img if self.gain == 1.0 else cv2.convertScaleAbs(img, alpha=self.gain)

    def __call__(self, img: np.ndarray, frame_index: int) -> Detections:
        return self.blobs(self.foreground(img, frame_index))

    def foreground(self, img: np.ndarray, frame_index: int) -> np.ndarray:
        """Background subtraction: the frame's moving pixels (255), shadows (127) dropped, inside the region."""
        cv2, p = self.cv2, self.p
        if not p.colour:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        if p.blur_px > 1:
            img = cv2.GaussianBlur(img, (p.blur_px, p.blur_px), 0)
        img = self._exposure(img, frame_index)
        raw = self.mog.apply(img, learningRate=p.relearn_rate if self.relearn > 0 else -1)
        self.frames += 1
        self.last_mask = raw
        _, fg = cv2.threshold(raw, 127, 255, cv2.THRESH_BINARY)  # 127 = shadow: dropped
        return fg if self.roi is None else cv2.bitwise_and(fg, self.roi)

    def blobs(self, fg: np.ndarray) -> Detections:
        """Moving pixels -> vehicles: morphology, connected components above the minimum area,
        fragments merged; a frame mostly in motion, or of too many blobs, is a global change."""
        cv2, p = self.cv2, self.p
        foreground = cv2.countNonZero(fg) / self.roi_pixels
        fg = cv2.morphologyEx(cv2.morphologyEx(fg, cv2.MORPH_OPEN, self.k_open), cv2.MORPH_CLOSE, self.k_close)
        # Grana's block-based labelling: the same components in the same order as the default
        # (Spaghetti), in a third of its time here on 320x240 masks (bench/vehicles.py)
        _, _, stats, _ = cv2.connectedComponentsWithStatsWithAlgorithm(fg, 8, cv2.CV_32S, cv2.CCL_GRANA)
        stats = stats[1:][stats[1:, cv2.CC_STAT_AREA] >= self.min_area]
        global_change = foreground > p.max_fg_frac or len(stats) > p.max_blobs
        self.relearn = 3 if global_change else max(0, self.relearn - 1)  # and a few frames after
        if global_change or not len(stats):
            return Detections.empty(global_change)
        x, y, w, h = (stats[:, i].astype(np.float64) for i in range(4))
        boxes, areas = merge_fragments(np.stack([x, y, x + w, y + h], axis=1), stats[:, cv2.CC_STAT_AREA].astype(np.float64),
                                       p.merge_ios, p.merge_gap_frac * self.w)
        # A blob's confidence grows with its size: blobs below ~2x the minimum area can extend a
        # track (ByteTrack's low-score stage) but never start one.
        return Detections(boxes, np.minimum(1.0, areas / (3.0 * self.min_area)))

    def absorb_faster(self, frames: int) -> None:
        """Let the background re-learn fast for a while (after a flood of phantom tracks)."""
        self.relearn = max(self.relearn, frames)


class LearnedDetector:
    """A torchvision detection model (COCO classes) from a checkpoint (`weights_only=True`): vehicles
    only, boxes in the frame's pixels. Runs on the GPU when there is one; frames go in batches."""

    def __init__(self, arch: str, weights: str, opts, device: str = "auto", min_score: float = 0.4):
        import torch
        import torchvision

        from recog.models.classifier import pick_device
        from recog.models.weights import read_weights, state_dict_from_bytes

        self.torch, self.min_score = torch, min_score
        self.device = pick_device(device)
        net = torchvision.models.get_model(arch, weights=None, weights_backbone=None, num_classes=91)
        net.load_state_dict(state_dict_from_bytes(read_weights(weights, opts), weights))
        self.net = net.eval().to(self.device)

    def __call__(self, frames_rgb: list[np.ndarray]) -> list[Detections]:
        """RGB frames -> their detections of COCO vehicle classes."""
        if not frames_rgb:  # torchvision's detectors fail on an empty batch
            return []
        torch = self.torch
        with torch.inference_mode():
            batch = [torch.from_numpy(f).to(self.device).permute(2, 0, 1).float().div_(255) for f in frames_rgb]
            outputs = self.net(batch)
        found = []
        for out in outputs:
            scores = out["scores"].cpu().numpy()
            keep = vehicle_detections(out["labels"].cpu().numpy(), scores, self.min_score)
            found.append(Detections(out["boxes"].cpu().numpy()[keep].astype(np.float64), scores[keep]))
        return found


def vehicle_detections(labels: np.ndarray, scores: np.ndarray, min_score: float) -> np.ndarray:
    """Which detections to keep: COCO vehicle classes scoring at least `min_score`."""
    return np.isin(labels, list(COCO_VEHICLES)) & (scores >= min_score)
