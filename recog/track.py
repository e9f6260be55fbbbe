"""Track and count: detections become tracks (ByteTrack, recog.bytetrack), tracks that
cross a named line become crossings, and each track keeps its few best crops for the classifier.

`track_segment` runs one video segment: it decodes every frame from `warmup_s` before the
segment's start (the background model and the tracker settle on frames the segment does not
own) to a little after its end (a crossing that begins inside may confirm just after), and
returns the tracks and crossings the segment owns: a crossing belongs to the segment whose own
time range holds it, a track to the segment of its first crossing (else of its mid-life). So
segments processed in parallel give the crossings of a whole-file run, and a track seen by two
segments is reported once: stitched, not doubled.

Counting follows supervision's LineZone: the anchor is the box's bottom-centre, the side is the
sign of the cross product with the line, and a crossing holds only once the anchor has stayed
on the new side for `cross_s` (jitter at the line does not count); "in" is the side where the
cross product is negative (for a left-to-right line: moving up the picture). Unlike LineZone,
a track counts at most once per line and direction, must first be seen on its starting side,
and keeps its state while its id lives. Unconfirmed tracks (id -1) never count.
"""

from __future__ import annotations

import collections
import json
import math
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import Iterator

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from recog import storage, video
from recog.bytetrack import ByteTrack
from recog.detect import Detections, LearnedDetector, MotionDetector, MotionParams, stacked, working_size
from recog.geometry import parse_line, parse_polygon, square_box

MAX_FOLLOW_S = 30.0  # a segment follows the vehicles it owns at most this long past its end
# --analyze-fps: the lowest rate at which the counts on the shared clips held (within one vehicle a
# line of every frame's; bench/vehicles.py --counts, README "How well it counts"); below it, a warning
COUNTS_HOLD_FPS = 12.5

# ---- lines ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TrackingSettings:
    """Everything `track_segment` needs besides the video; JSON-able (it travels to Ray tasks)."""

    lines: tuple[str, ...] = ()  # "name=x1,y1,x2,y2" specs
    roi: str | None = None  # "x1,y1,x2,y2,x3,y3,..." polygon, fractions
    detector: str = "motion"
    detector_weights: str | None = None
    motion: MotionParams = MotionParams()
    lost_s: float = 1.0  # a lost track is kept this long (stop-and-go, occlusion)
    confirm_s: float = 0.12  # a track is confirmed after this long of consecutive matches
    min_track_s: float = 0.2  # a track seen for less is a flicker (asphalt, overlay text), no vehicle: dropped. Not
    # longer: a vehicle's track may break where it passes another, and a 5-frame piece may be the one that crosses
    min_iou: float = 0.1  # vehicles at 12.5 fps move much of their length per frame
    cross_s: float = 0.1  # the anchor must stay on the new side this long
    max_new_per_s: float = 8.0  # more new tracks per second than this is a phantom flood
    crops_per_track: int = 3
    crop_stride: int = 2  # consider a crop every this many observations of a track
    analyze_fps: float | None = None  # detect and track at about this rate (every frame is decoded); None: every frame

    def frame_step(self, fps: float) -> int:
        """Every how many frames of a `fps` video one is analysed: the largest step whose rate is
        at least `analyze_fps` (or within 5 % under it: 24.01 fps at 12.5 takes every 2nd frame)."""
        if self.analyze_fps is None:
            return 1
        return max(1, math.floor(fps / (0.95 * self.analyze_fps)))

    def warmup_s(self) -> float:
        """Seconds before a segment's start it decodes: MOG2 converges to its whole-file state on
        the scale of its history (cold, it learns fast and differently), and the tracker needs
        its lost-track buffer. Measured on the shared clips: see tests/integration/test_vehicles.py."""
        return max(2.0, 0.5 * self.motion.history_s) + self.lost_s if self.detector == "motion" else 2 * self.lost_s

    def to_dict(self) -> dict:
        """The settings as JSON-able values; analyze_fps only when set, so that the default keeps the
        ids of units that outputs written before it existed hold."""
        d = asdict(self)
        if d["analyze_fps"] is None:
            del d["analyze_fps"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrackingSettings":
        return cls(**{**d, "lines": tuple(d["lines"]), "motion": MotionParams(**d["motion"])})


class LineCounter:
    """Crossings of one named line by confirmed tracks, in working pixels."""

    def __init__(self, name: str, line: tuple[float, float, float, float], size: tuple[int, int], min_frames: int):
        w, h = size
        self.name = name
        self.a, self.b = np.array([line[0] * w, line[1] * h]), np.array([line[2] * w, line[3] * h])
        self.v = self.b - self.a
        self.length2 = float(self.v @ self.v)
        # which anchor coordinate the side test leans on (more than 30 degrees from parallel)
        self.uses_x = abs(self.v[1]) > 0.5 * math.sqrt(self.length2)
        self.uses_y = abs(self.v[0]) > 0.5 * math.sqrt(self.length2)
        self.min_frames = max(1, min_frames)
        self.reference: dict[int, list] = {}  # track -> [side, observations on it]
        self.run: dict[int, list] = {}  # track -> [new side, observations, first time, first frame]
        self.counted: set[tuple[int, str]] = set()

    def sides(self, anchors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(on the "in" side, within the line's extent and off the line) per anchor."""
        d = anchors - self.a
        cross = self.v[0] * d[:, 1] - self.v[1] * d[:, 0]
        along = (d @ self.v) / self.length2
        return cross < 0, (along >= 0) & (along <= 1) & (cross != 0)

    def update(self, ids, anchors: np.ndarray, t: float, frame: int, valid: np.ndarray | None = None) -> list[dict]:
        """The crossings that hold from this frame; `valid` marks anchors to trust (a box cut by the
        frame's edge has its anchor in the wrong place)."""
        if not len(ids):
            return []
        side_in, usable = self.sides(anchors)
        if valid is not None:
            usable &= valid
        events = []
        for tid, s, ok in zip(ids, side_in.tolist(), usable.tolist()):
            tid = int(tid)
            if tid < 0 or not ok:
                continue
            ref = self.reference.setdefault(tid, [s, 0])
            if s == ref[0]:
                ref[1] += 1
                self.run.pop(tid, None)
                continue
            if ref[1] < self.min_frames:  # never settled on its first side (born at the line): no crossing
                self.reference[tid] = [s, 1]
                self.run.pop(tid, None)
                continue
            run = self.run.get(tid)
            if run is None or run[0] != s:
                run = self.run[tid] = [s, 0, t, frame]
            run[1] += 1
            if run[1] >= self.min_frames:
                self.reference[tid] = [s, run[1]]
                del self.run[tid]
                direction = "in" if s else "out"
                if (tid, direction) not in self.counted:
                    self.counted.add((tid, direction))
                    events.append({"line": self.name, "direction": direction, "track": tid, "t": run[2], "frame": run[3]})
        return events


# ---- tracks ---------------------------------------------------------------------------------------

@dataclass
class Track:
    """What one vehicle did in a segment, in the segment's local track numbering."""

    number: int
    first_t: float
    first_frame: int
    entry: tuple[float, float]  # anchor when first confirmed, fractions of the frame
    last_t: float = 0.0
    last_frame: int = 0
    exit: tuple[float, float] = (0.0, 0.0)
    frames_seen: int = 0
    suspect: bool = False  # confirmed during a phantom flood: not counted
    crossings: list = field(default_factory=list)
    crops: list = field(default_factory=list)  # [quality, t, frame, box (full pixels), pixels (cut_crop's)], best first

    def owner_time(self) -> float:
        """The time that decides which segment reports this track: its first crossing (so that a
        crossing and its vehicle are reported together), else when it was first seen."""
        counted = [c["t"] for c in self.crossings if "duplicate_of" not in c]
        return min(counted) if counted else self.first_t


def heading(entry: tuple[float, float], exit_: tuple[float, float]) -> tuple[str, float | None]:
    """Direction of travel in the picture: a word (up, down-left, ...) and degrees (0 = right,
    90 = down); ("still", None) when the vehicle hardly moved."""
    dx, dy = exit_[0] - entry[0], exit_[1] - entry[1]
    if math.hypot(dx, dy) < 0.02:
        return "still", None
    degrees = math.degrees(math.atan2(dy, dx)) % 360
    words = ("right", "down-right", "down", "down-left", "left", "up-left", "up", "up-right")
    return words[int((degrees + 22.5) // 45) % 8], round(degrees, 1)


@dataclass
class SegmentResult:
    tracks: list[Track]  # owned by the segment
    crossings: list[dict]  # counted, owned by the segment, in time order
    flags: list[dict]  # global changes, exposure changes, phantom floods
    frames: int  # decoded, warm-up included
    fps: float  # the video's
    size: tuple[int, int]  # full frame
    error: str | None = None


def _flag(flags: list, kind: str, t: float, frame: int, step: int = 1, **info) -> None:
    """Start a flag, or extend the last one of this kind when it ended an analysed frame or two ago
    (frames `step` apart)."""
    last = next((f for f in reversed(flags) if f["kind"] == kind), None)
    if last is not None and frame - last["end_frame"] <= 2 * step:
        last.update(end_t=t, end_frame=frame, **info)
    else:
        flags.append({"kind": kind, "start_t": t, "end_t": t, "start_frame": frame, "end_frame": frame, **info})


class SegmentTracker:
    """Detection + tracking + counting + best crops over the analysed frames of one segment, in
    order: every `frame_step`-th frame of a `video_fps` video (--analyze-fps). Every gate counted
    in frames (confirmation, the crossing hold, the lost-track buffer, the shortest track, the
    background's memory) is set from the analysed rate `fps`, so that it lasts as long in seconds."""

    def __init__(self, settings: TrackingSettings, size: tuple[int, int], video_fps: float, start: float, end: float,
                 detector=None):
        import cv2

        self.frame_step = settings.frame_step(video_fps)
        self.video_fps, fps = video_fps, video_fps / self.frame_step
        self.cv2, self.s, self.fps, self.full = cv2, settings, fps, size
        self.crop_stride = max(1, round(settings.crop_stride / self.frame_step))
        self.small = working_size(*size, settings.motion.proc_width)
        self.start, self.end = start, end
        self.detector = detector or MotionDetector(self.small, fps, settings.motion,
                                                   parse_polygon(settings.roi) if settings.roi else None)
        # the lost-track buffer in frames as the trackers package counts it (in 30 fps frames, scaled)
        self.tracker = ByteTrack(lost_frames=int(fps / 30.0 * max(1, round(settings.lost_s * 30))),
                                 confirm_frames=max(2, round(settings.confirm_s * fps)), min_iou=settings.min_iou)
        self.min_cross = max(2, round(settings.cross_s * fps))
        self.counters = [LineCounter(name, line, self.small, self.min_cross) for name, line in map(parse_line, settings.lines)]
        self.tracks: dict[int, Track] = {}
        self.numbers: dict[int, int] = {}  # tracker id -> number in order of confirmation (tracker ids are process-wide)
        self.crossings, self.flags = [], []
        self.new_tracks = collections.deque()
        self.flood_until = -1.0

    def analyses(self, frame: int) -> bool:
        """Whether frame number `frame` is one to analyse: chosen by its number, so that a segment
        analyses the frames a whole-file run does."""
        return frame % self.frame_step == 0

    def done(self, t: float) -> bool:
        """Whether frames at time `t` are past what the segment needs: its end, plus long enough
        for a crossing begun inside to hold, plus as long as a track it owns is still in view (up
        to MAX_FOLLOW_S), so that its vehicles' rows are whole."""
        if t < self.end + (self.min_cross + 2) / self.fps:
            return False
        if t >= self.end + MAX_FOLLOW_S:
            return True
        return not any(self.start <= tr.owner_time() < self.end and tr.last_t >= t - self.s.lost_s
                       for tr in self.tracks.values())

    def step(self, t: float, frame: int, small: np.ndarray, detections: Detections, pixels) -> None:
        """One analysed frame: its detections into the tracker, the confirmed tracks into the
        counters, crops from `pixels` (the decoded frame, see `cut_crop`) for the tracks' best views."""
        if detections.global_change:
            _flag(self.flags, "global_change", t, frame, self.frame_step)
        if isinstance(self.detector, MotionDetector) and abs(self.detector.gain - 1.0) > 0.15:
            _flag(self.flags, "exposure_change", t, frame, self.frame_step, gain=round(self.detector.gain, 3))
        if not len(detections.boxes) and not len(self.tracker):
            return
        numbers, boxes = self.track(detections, t, frame)
        if not len(numbers):
            return
        anchors = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, boxes[:, 3]], 1)
        w, h = self.small
        for n, box, anchor in zip(numbers.tolist(), boxes, anchors.tolist()):
            track = self.tracks[n]
            track.last_t, track.last_frame = t, frame
            track.exit = (anchor[0] / w, anchor[1] / h)
            if not track.frames_seen:
                track.entry = track.exit
            track.frames_seen += 1
            if track.frames_seen % self.crop_stride == 1 or self.crop_stride == 1:
                self.consider_crop(track, box, small, pixels, t, frame)
        self.count(numbers, boxes, anchors, t, frame)

    def track(self, detections: Detections, t: float, frame: int) -> tuple[np.ndarray, np.ndarray]:
        """ByteTrack's update: the confirmed tracks' numbers and boxes in this frame."""
        ids, boxes = self.tracker.update(detections.boxes.astype(np.float32), detections.confidence.astype(np.float32))
        return np.array([self._number(i, t, frame) for i in ids.tolist()], dtype=np.int64), boxes

    def count(self, numbers: np.ndarray, boxes: np.ndarray, anchors: np.ndarray, t: float, frame: int) -> None:
        """The lines' crossings in this frame; a box cut by the frame's edge gives no anchor to trust."""
        w, h = self.small
        cut_x = (boxes[:, 0] <= 1) | (boxes[:, 2] >= w - 1)
        cut_y = boxes[:, 3] >= h - 1
        by_number = None
        for counter in self.counters:
            for event in counter.update(numbers, anchors, t, frame, ~((cut_x & counter.uses_x) | (cut_y & counter.uses_y))):
                by_number = by_number or {int(n): b for n, b in zip(numbers, boxes)}
                self._record(event, by_number)

    def _number(self, tracker_id: int, t: float, frame: int) -> int:
        """This segment's number for a tracker id; a new track is checked against the flood guard."""
        if tracker_id in self.numbers:
            return self.numbers[tracker_id]
        number = self.numbers[tracker_id] = len(self.numbers)
        self.tracks[number] = Track(number, t, frame, entry=(0.0, 0.0))
        self.new_tracks.append(t)
        while self.new_tracks and self.new_tracks[0] < t - 1.0:
            self.new_tracks.popleft()
        if len(self.new_tracks) > self.s.max_new_per_s and self.flood_until < t:
            self.flags.append({"kind": "phantom_flood", "start_t": t, "start_frame": frame,
                               "new_tracks_last_s": len(self.new_tracks)})
            self.flood_until = t + 1.0
            if isinstance(self.detector, MotionDetector):
                self.detector.absorb_faster(int(self.fps))
        self.tracks[number].suspect = t <= self.flood_until
        return number

    def consider_crop(self, track: Track, box, small: np.ndarray, pixels, t: float, frame: int) -> None:
        """Keep the crop if it is among the track's best: large, sharp, not cut by the frame's edge.
        Its quality is judged on the working frame; only a crop that makes the best few is cut from
        the full-resolution frame (and only its pixels converted to RGB)."""
        cv2 = self.cv2
        w, h = self.small
        x0, y0, x1, y1 = max(0, int(box[0])), max(0, int(box[1])), min(w, math.ceil(box[2])), min(h, math.ceil(box[3]))
        if x1 - x0 < 4 or y1 - y0 < 4:
            return
        grey = cv2.cvtColor(small[y0:y1, x0:x1], cv2.COLOR_BGR2GRAY)
        edge = x0 <= 1 or y0 <= 1 or x1 >= w - 1 or y1 >= h - 1
        quality = float((x1 - x0) * (y1 - y0) * cv2.Laplacian(grey, cv2.CV_32F).var()) * (0.25 if edge else 1.0)
        if len(track.crops) >= self.s.crops_per_track and quality <= track.crops[-1][0]:
            return
        sx, sy = self.full[0] / w, self.full[1] / h
        crop = cut_crop(pixels, square_box((x0 * sx, y0 * sy, x1 * sx, y1 * sy), self.full))
        track.crops.append([quality, t, frame, [int(x0 * sx), int(y0 * sy), int(x1 * sx), int(y1 * sy)], crop])
        track.crops.sort(key=lambda c: -c[0])
        del track.crops[self.s.crops_per_track:]

    def _record(self, event: dict, boxes: dict) -> None:
        """A crossing: a fragment of a larger vehicle's box is a duplicate; one by a suspect track
        is not counted; the segment counts only those in its own time range."""
        track = self.tracks[event["track"]]
        track.crossings.append(event)
        box = boxes[event["track"]]
        area = (box[2] - box[0]) * (box[3] - box[1])
        gap = 2 * self.s.motion.merge_gap_frac * self.small[0]
        for other, b in boxes.items():
            if other != event["track"] and (b[2] - b[0]) * (b[3] - b[1]) > area and stacked(b, box, gap):
                event["duplicate_of"] = other
                return
        if not track.suspect and self.start <= event["t"] < self.end:
            self.crossings.append(event)

    def result(self, frames: int, error: str | None = None) -> SegmentResult:
        """The tracks and crossings the segment owns, without the tracks seen too briefly to be vehicles."""
        shortest = max(2, math.ceil(self.s.min_track_s * self.fps - 1e-9))  # analysed frames
        lasting = {n for n, tr in self.tracks.items() if tr.frames_seen >= shortest}
        owned = [tr for n, tr in self.tracks.items() if n in lasting and self.start <= tr.owner_time() < self.end]
        crossings = sorted((c for c in self.crossings if c["track"] in lasting), key=lambda c: c["t"])
        return SegmentResult(owned, crossings, self.flags, frames, self.video_fps, self.full, error)


def track_segment(seg: video.Segment, settings: TrackingSettings, opts: storage.StorageOptions, detector=None,
                  batch: int = 8) -> SegmentResult:
    """Every frame of a segment (and its warm-up) decoded (H.264's frames depend on the ones before);
    the analysed ones (all, unless `settings.analyze_fps`) through detection, tracking and counting."""
    warmup = Fraction(settings.warmup_s()).limit_denominator(1000)
    read_from = max(Fraction(0), seg.start - warmup)
    end = float(seg.end) if seg.end is not None else math.inf
    try:
        container = video.open_video(seg.uri, opts)
    except FileNotFoundError:
        return SegmentResult([], [], [], 0, 0.0, (0, 0), "video disappeared after it was listed")
    except av.FFmpegError as e:
        return SegmentResult([], [], [], 0, 0.0, (0, 0), video.cannot_open(e))
    with container:
        if not container.streams.video or container.streams.video[0].codec_context is None:
            return SegmentResult([], [], [], 0, 0.0, (0, 0), "no video stream this FFmpeg build can decode")
        stream = container.streams.video[0]
        # One thread: a task holds about one CPU, and segments keep every core busy (bench/vehicles.py:
        # two decoder threads were no faster per core at 1080p on a shared 2-core machine).
        stream.codec_context.thread_count = 1
        fps = video.frame_rate(stream)
        size = (stream.codec_context.width, stream.codec_context.height)
        if detector is None and settings.detector != "motion":
            detector = LearnedDetector(settings.detector, settings.detector_weights, opts)
        tracker = SegmentTracker(settings, size, fps, float(seg.start), end, detector)
        learned = isinstance(tracker.detector, LearnedDetector)
        scaler = VideoReformatter()  # one for the segment: a new one per frame costs more than decoding
        errors, coverage, frames, pending = [], [Fraction(-1)], 0, []

        def detect_pending():
            """A learned detector's batch: frames in RGB at full size, which the crops are then cut from."""
            found = tracker.detector([rgb for *_, rgb in pending])
            for (t, index, small, rgb), detections in zip(pending, found):
                tracker.step(t, index, small, detections.scaled(tracker.small[0] / size[0], tracker.small[1] / size[1]), rgb)
            pending.clear()

        previous = None
        for ts, frame in video.frames_from(container, stream, video.Segment(seg.uri, seg.key, read_from, None), errors, coverage):
            if ts < read_from:
                continue
            t = float(ts)
            if tracker.done(t):
                break
            if previous is not None and t <= previous:  # repeated timestamps: count frames instead
                t = previous + 1 / fps
            previous = t
            frames += 1
            index = round(t * fps)
            if not tracker.analyses(index):
                continue
            small = working_frame(scaler, frame, tracker.small)
            if learned:
                pending.append((t, index, small, frame.to_ndarray(format="rgb24")))
                if len(pending) >= batch:
                    detect_pending()
            else:
                tracker.step(t, index, small, tracker.detector(small, index), frame)
        if pending:
            detect_pending()
    return tracker.result(frames, video.decode_problems(seg, coverage[0], errors))


def working_frame(scaler: VideoReformatter, frame, size: tuple[int, int]) -> np.ndarray:
    """The decoded frame as the detector sees it: scaled to the working size by FFmpeg's scaler
    (area averaging) straight into BGR, one conversion from the decoder's planes."""
    return scaler.reformat(frame, width=size[0], height=size[1], format="bgr24", interpolation="AREA").to_ndarray()


@dataclass
class PlanarCrop:
    """A crop's YUV 4:2:0 planes (I420, even bounds), converted to RGB only when it goes to the
    classifier: a track replaces its crops often (at 1080p converting each cost more than the rest of
    crop keeping), and a segment's kept crops take half the memory."""

    i420: np.ndarray  # (h * 3 / 2, w): the luma rows, then U's and V's
    trim: tuple[int, int, int, int]  # the box within the even bounds
    colorspace: int
    color_range: int

    def rgb(self, scaler: VideoReformatter | None = None) -> np.ndarray:
        """The RGB pixels, by FFmpeg's converter as the whole frame would be converted (to the bit)."""
        part = av.VideoFrame.from_ndarray(self.i420, format="yuv420p")
        part.colorspace, part.color_range = self.colorspace, self.color_range
        x0, y0, x1, y1 = self.trim
        return (scaler or VideoReformatter()).reformat(part, format="rgb24").to_ndarray()[y0:y1, x0:x1]


def cut_crop(pixels, box) -> PlanarCrop | np.ndarray:
    """The pixels of `box` (x0, y0, x1, y1, full-frame pixels) in a decoded frame: its YUV 4:2:0
    planes (a PlanarCrop), or RGB from an RGB array or a frame of any other pixel format (converted
    whole by FFmpeg: full-range yuvj, for one)."""
    x0, y0, x1, y1 = box
    if isinstance(pixels, np.ndarray):
        return pixels[y0:y1, x0:x1].copy()
    # chroma is sampled every 2 pixels: the crop widened to even bounds, trimmed after conversion
    ex0, ey0 = x0 & ~1, y0 & ~1
    ex1, ey1 = min(pixels.width & ~1, (x1 + 1) & ~1), min(pixels.height & ~1, (y1 + 1) & ~1)
    if pixels.format.name != "yuv420p" or ex1 - ex0 < 2 or ey1 - ey0 < 2:
        return pixels.to_ndarray(format="rgb24")[y0:y1, x0:x1].copy()
    planes = [np.frombuffer(p, np.uint8).reshape(-1, p.line_size) for p in pixels.planes]
    u, v = (c[ey0 // 2:ey1 // 2, ex0 // 2:ex1 // 2] for c in planes[1:])
    i420 = np.concatenate([planes[0][ey0:ey1, ex0:ex1].ravel(), u.ravel(), v.ravel()]).reshape(-1, ex1 - ex0)
    return PlanarCrop(i420, (x0 - ex0, y0 - ey0, x1 - ex0, y1 - ey0), pixels.colorspace, pixels.color_range)


def crop_rgb(crop: PlanarCrop | np.ndarray, scaler: VideoReformatter | None = None) -> np.ndarray:
    """A cut crop's RGB pixels."""
    return crop.rgb(scaler) if isinstance(crop, PlanarCrop) else crop


# ---- the Ray stage ---------------------------------------------------------------------------------

def segment_records(seg: video.Segment, result: SegmentResult, segment_number: int) -> Iterator[dict]:
    """The records of a tracked segment: one per kept crop of each track it owns (`frame`: the crop,
    `meta`: the track as JSON), and a record with an error for a track without a usable crop."""
    from PIL import Image

    recorded_at = video.recorded_time(seg.recorded_at)
    base = {"source_uri": seg.uri, "camera": seg.camera}
    scaler = VideoReformatter()  # one: FFmpeg re-creates its converter only when a crop's size changes
    for track in sorted(result.tracks, key=lambda tr: tr.first_t):
        track_id = segment_number * 1_000_000 + track.number
        words, degrees = heading(track.entry, track.exit)
        summary = {"track_id": track_id, "first_t": track.first_t, "last_t": track.last_t, "first_frame": track.first_frame,
                   "last_frame": track.last_frame, "frames_seen": track.frames_seen, "entry": track.entry, "exit": track.exit,
                   "direction": words, "heading_deg": degrees, "suspect": track.suspect,
                   "crossings": [c for c in result.crossings if c["track"] == track.number],
                   "crops": [{"quality": q, "t": t, "frame": f, "box": b} for q, t, f, b, _ in track.crops]}
        key = f"{seg.key}#{track_id}"
        if not track.crops:
            yield {**base, "key": key, "meta": json.dumps(summary), "pts_s": track.first_t, "frame_index": track.first_frame,
                   "wall_time": video.at(recorded_at, track.first_t), "error": "no usable crop (the vehicle was too small)"}
        for _, t, frame, _, pixels in track.crops:
            yield {**base, "key": key, "member": f"crop@{frame}", "meta": json.dumps(summary), "pts_s": t,
                   "frame_index": frame, "wall_time": video.at(recorded_at, t), "frame": Image.fromarray(crop_rgb(pixels, scaler))}


def segment_summary(seg: video.Segment, result: SegmentResult) -> str:
    """What a segment says about itself (its video, frames, rate, size, flags, decode problems), as
    JSON: the `meta` of its unit's end record."""
    return json.dumps({"source_uri": seg.uri, "camera": seg.camera, "recorded_at": seg.recorded_at, "frames": result.frames,
                       "fps": result.fps, "size": result.size, "flags": result.flags, "error": result.error})


def track_units(units, opts, prep, settings: dict, detector=None):
    """The CPU (or, with a learned detector, GPU) stage of the vehicles job: each unit is a video
    segment; its records (crops of the tracks it owns) become model input for the classifier."""
    import cv2

    from recog import preprocess, sources

    cv2.setNumThreads(1)  # a task holds at most a core: OpenCV's own threads would only contend with the other segments'
    tracking = TrackingSettings.from_dict(settings)
    for row in units.to_pylist():
        unit = sources.Unit.from_row(row)
        seg = video.Segment.from_params(unit.params)
        result = track_segment(seg, tracking, opts, detector)
        # a block of crops at a time: each in RGB only on its way to model input
        block, count = [], 0
        for r in segment_records(seg, result, unit.params["number"]):
            block.append({**sources.blank_record(unit.source), **r, "unit_id": unit.unit_id, "record": count, "end": False})
            count += 1
            if len(block) == sources.RECORDS_PER_BLOCK:
                yield preprocess.model_input(block, prep, sources.RECORD_SCHEMA)
                block = []
        block.append({**sources.blank_record(unit.source, meta=segment_summary(seg, result)), "unit_id": unit.unit_id,
                      "record": count, "end": True})
        yield preprocess.model_input(block, prep, sources.RECORD_SCHEMA)


class DetectingTracker:
    """The tracking stage as a Ray actor, for a learned detector: the model loads once per actor
    (on its GPU when it has one), then each unit is tracked as `track_units` does."""

    def __init__(self, opts, prep, settings: dict):
        self.opts, self.prep, self.settings = opts, prep, settings
        tracking = TrackingSettings.from_dict(settings)
        self.detector = LearnedDetector(tracking.detector, tracking.detector_weights, opts)

    def __call__(self, units):
        yield from track_units(units, self.opts, self.prep, self.settings, self.detector)
