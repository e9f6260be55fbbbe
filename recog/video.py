"""Footage: video files -> time segments -> sampled frames, decoded with PyAV (FFmpeg in the wheel).

A long video is cut into segments of `segment_seconds` that decode independently: each seeks to
the keyframe before its start, decodes, and keeps the frames whose presentation time falls in
[start, end). Which frames are kept is a rule on each frame's own timestamp, so a frame at a
segment border is kept by exactly one segment, and a segmented decode keeps the same frames as
decoding the whole file:

- `fps F`: the first frame of every 1/F-second interval [k/F, (k+1)/F) of video time
  (segment starts are multiples of 1/F, so the first frame after a start opens an interval);
- `every_n N`: frames whose index is a multiple of N;
- `keyframes`: the keyframes, decoded alone (the decoder skips every other frame: the fast path).

Times are the frames' decoded timestamps relative to the stream's start, not counts from the
container header (AVI headers overstate them). Frames leave the decoder in display order, but
some files (DivX-style packed B-frames) label them with locally shuffled timestamps (1, 4, 6, 5,
7, ...): the set is right, the order is not. So the frames keep the decoder's order and take the
timestamps in sorted order, through a small window. The frame index is the time times the
nominal rate.
"""

from __future__ import annotations

import collections
import datetime as dt
import heapq
import math
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Iterator

from recog import storage
from recog.errors import ConfigError
from recog.sidecars import sidecar_context, utc
from recog.storage import StorageOptions

if TYPE_CHECKING:
    import av

VIDEO_EXTS = ("mp4", "mkv", "avi", "mov")
REORDER_FRAMES = 8  # frames held back to put shuffled timestamps in order
IO_BUFFER = 4 << 20  # bytes per read from object storage: few large range requests, not many small
TRUNCATION_SLACK_S = 1.0  # a stream may end this much before its header's duration without complaint


@dataclass(frozen=True)
class Sampling:
    """Which frames to label: one of fps, every_n, keyframes."""

    fps: float | None = None
    every_n: int | None = None
    keyframes: bool = False

    def __post_init__(self):
        chosen = [self.fps is not None, self.every_n is not None, self.keyframes]
        if sum(chosen) != 1:
            raise ConfigError("choose one way to sample frames: --fps, --every-n or --keyframes")
        if (self.fps is not None and self.fps <= 0) or (self.every_n is not None and self.every_n < 1):
            raise ConfigError("--fps must be > 0 and --every-n >= 1")

    def describe(self) -> str:
        if self.keyframes:
            return "keyframes"
        return f"{self.fps:g} frame(s)/s" if self.fps is not None else f"every {self.every_n}th frame"

    def segment_length(self, seconds: float) -> Fraction:
        """`seconds`, rounded up to a whole number of sampling intervals (fps mode)."""
        length = Fraction(seconds).limit_denominator(1000)
        if self.fps is None:
            return length
        step = 1 / Fraction(self.fps).limit_denominator(1000)
        return step * max(1, math.ceil(length / step))


class FrameSelector:
    """Applies the sampling rule to frames given in timestamp order."""

    def __init__(self, sampling: Sampling):
        self.sampling = sampling
        self.rate = Fraction(sampling.fps).limit_denominator(1000) if sampling.fps is not None else None
        self.last_interval: int | None = None

    def keep(self, t: Fraction, index: int | None) -> bool:
        if self.sampling.keyframes:
            return True  # the decoder only hands out keyframes
        if self.sampling.every_n is not None:
            return index is not None and index % self.sampling.every_n == 0
        interval = math.floor(t * self.rate)
        if interval == self.last_interval:
            return False
        self.last_interval = interval
        return True


@dataclass(frozen=True)
class VideoInfo:
    duration_s: float | None = None
    fps: float | None = None
    codec: str | None = None
    width: int | None = None
    height: int | None = None
    error: str | None = None


def open_video(uri: str, opts: StorageOptions) -> av.container.InputContainer:
    """Open a video for random access, local or on S3 (seeks become range requests)."""
    import av  # PyAV, imported where a video is opened: image jobs never load FFmpeg

    if not storage.is_s3(uri):
        return av.open(storage.filesystem(uri, opts)[1])
    fs, path = storage.filesystem(uri, opts)
    return av.open(fs.open_input_file(path), buffer_size=IO_BUFFER)


def probe(uri: str, opts: StorageOptions) -> VideoInfo:
    """Duration, rate and codec from the container header (no decoding)."""
    import av

    try:
        with open_video(uri, opts) as c:
            if not c.streams.video:
                return VideoInfo(error="no video stream in file")
            s = c.streams.video[0]
            duration = float(s.duration * s.time_base) if s.duration else (c.duration / 1e6 if c.duration else None)
            rate = s.average_rate or s.base_rate
            if s.frames and rate:  # a truncated AVI's duration is guessed from its size; its header's count is not
                duration = max(duration or 0.0, s.frames / float(rate))
            ctx = s.codec_context
            return VideoInfo(duration, float(rate) if rate else None, ctx.name if ctx else None,
                             ctx.width if ctx else None, ctx.height if ctx else None)
    except FileNotFoundError:
        raise
    except (av.FFmpegError, OSError, ValueError) as e:
        if storage.is_s3(uri) and isinstance(e, OSError) and "AWS Error" in str(e):
            raise  # the store, not the file: let the task retry
        return VideoInfo(error=cannot_open(e))


def cannot_open(e: BaseException) -> str:
    """What to say of a video FFmpeg would not open: in words, without its error number and the path
    (the row already names the file)."""
    said = getattr(e, "strerror", None) or str(e)
    return (f"cannot open video: not a video FFmpeg can read, or cut short before its index (a truncated MP4 "
            f"loses the index at its end): {said}")


# ---- where and when a video was recorded ------------------------------------------------------

def _pattern_regex(pattern: str) -> re.Pattern:
    """'{camera}_{start:%Y%m%dT%H%M%S}.mp4' -> a regex with groups camera and start."""
    out, pos = "", 0
    for m in re.finditer(r"\{(\w+)(?::([^}]*))?\}", pattern):
        out += re.escape(pattern[pos:m.start()])
        out += f"(?P<{m.group(1)}>.+?)"
        pos = m.end()
    return re.compile(out + re.escape(pattern[pos:]) + "$")


def parse_name(pattern: str, name: str) -> dict:
    """Fields a file name carries, by a pattern like '{camera}_{start:%Y%m%dT%H%M%S}.mp4'; a start
    time that does not parse is left out."""
    m = _pattern_regex(pattern).match(name)
    if not m:
        return {}
    fields = m.groupdict()
    formats = dict(re.findall(r"\{(\w+):([^}]*)\}", pattern))
    if "start" in fields and "start" in formats:
        try:
            fields["start"] = utc(dt.datetime.strptime(fields["start"], formats["start"]))
        except ValueError:
            del fields["start"]
    return fields


def recording_context(meta_text: str | None, pattern: str | None, name: str) -> tuple[str | None, dt.datetime | None]:
    """(camera, start time) of a recording: from its .json sidecar ({"camera": ..., "start": ...}),
    else from its file name by `pattern`; either None when unknown."""
    fields = parse_name(pattern, name) if pattern else {}
    camera, start = sidecar_context(meta_text, "start")
    return camera or fields.get("camera"), start or fields.get("start")


# ---- planning ---------------------------------------------------------------------------------

def segment_bounds(duration_s: float | None, length: Fraction) -> list[tuple[Fraction, Fraction | None]]:
    """[start, end) segments covering the video; the last is open-ended (headers can be short)."""
    if not duration_s or duration_s <= length:
        return [(Fraction(0), None)]
    n = math.ceil(Fraction(duration_s).limit_denominator(1000) / length)
    return [(k * length, (k + 1) * length if k < n - 1 else None) for k in range(n)]


# ---- decoding ---------------------------------------------------------------------------------

@dataclass
class Segment:
    """One unit of footage work; times in seconds of video time."""

    uri: str
    key: str
    start: Fraction
    end: Fraction | None
    duration_s: float | None = None
    meta: str | None = None
    camera: str | None = None
    recorded_at: str | None = None  # ISO start time of the recording, if known

    def to_params(self) -> dict:
        return {"uri": self.uri, "key": self.key, "start": str(self.start), "end": None if self.end is None else str(self.end),
                "duration_s": self.duration_s, "meta": self.meta, "camera": self.camera, "recorded_at": self.recorded_at}

    @classmethod
    def from_params(cls, p: dict) -> "Segment":
        return cls(p["uri"], p["key"], Fraction(p["start"]), None if p["end"] is None else Fraction(p["end"]),
                   p["duration_s"], p["meta"], p["camera"], p["recorded_at"])


def _ordered_frames(container, stream, errors: list[str], coverage: list[Fraction]) -> Iterator[tuple[Fraction, av.VideoFrame]]:
    """Decoded frames in the decoder's (display) order, with their timestamps in sorted order, as
    (seconds since stream start, frame)."""
    import av

    tb, origin = stream.time_base, stream.start_time or 0
    times: list[Fraction] = []
    frames: collections.deque = collections.deque()
    for packet in container.demux(stream):
        if packet.pts is not None:
            coverage[0] = max(coverage[0], (packet.pts - origin) * tb)
        try:
            decoded = packet.decode()
        except av.FFmpegError as e:
            errors.append(f"{type(e).__name__}: {e}")
            continue
        for frame in decoded:
            ts = frame.pts if frame.pts is not None else frame.dts
            if ts is None:
                continue
            heapq.heappush(times, (ts - origin) * tb)
            frames.append(frame)
            if len(frames) > REORDER_FRAMES:
                yield heapq.heappop(times), frames.popleft()
    while frames:
        yield heapq.heappop(times), frames.popleft()


def frame_rate(stream) -> float:
    """The stream's frame rate: the average, guessed or base rate, the first between 1 and 240 fps
    (a file with broken timestamps can report 21,731 fps), else 25."""
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate and 1.0 <= float(rate) <= 240.0:
            return float(rate)
    return 25.0


def recorded_time(iso: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(iso) if iso else None


def at(start: dt.datetime | None, seconds: float) -> dt.datetime | None:
    """The wall-clock time `seconds` into a recording that started at `start` (None if unknown)."""
    return start + dt.timedelta(seconds=float(seconds)) if start else None


def frames_from(container, stream, seg: Segment, errors: list[str], coverage: list[Fraction]):
    """Frames in display order from the keyframe before `seg.start` on (frames before the start
    come too; the caller drops them), as (seconds since the stream's start, frame)."""
    if seg.start > 0:
        rate = frame_rate(stream)
        margin = Fraction(REORDER_FRAMES) / Fraction(rate).limit_denominator(1000)
        target = (stream.start_time or 0) + int((seg.start - margin) / stream.time_base)
        container.seek(max(target, 0), stream=stream, backward=True, any_frame=False)
        frames = _ordered_frames(container, stream, errors, coverage)
        first = next(frames, None)
        if first is None or first[0] <= seg.start:
            yield from ([first] if first else [])
            yield from frames
            return
        # The seek landed past the start (a file without a usable index): decode from the
        # beginning instead, slower but without losing the frames in between.
        frames.close()
        container.seek(stream.start_time or 0, stream=stream, backward=True, any_frame=False)
    yield from _ordered_frames(container, stream, errors, coverage)


def read_segment(seg: Segment, sampling: Sampling, opts: StorageOptions) -> Iterator[dict]:
    """Records for the sampled frames of one segment (payload `frame`, a PIL image), and an error
    row if part of it could not be decoded."""
    import av

    base = {"source_uri": seg.uri, "key": seg.key, "meta": seg.meta, "camera": seg.camera, "error": None}
    try:
        container = open_video(seg.uri, opts)
    except FileNotFoundError:
        yield {**base, "error": "video disappeared after it was listed"}
        return
    except av.FFmpegError as e:
        yield {**base, "error": cannot_open(e)}
        return
    with container:
        if not container.streams.video:
            yield {**base, "error": "no video stream in file"}
            return
        stream = container.streams.video[0]
        if stream.codec_context is None:
            yield {**base, "error": "unsupported codec: this FFmpeg build has no decoder for the video stream"}
            return
        stream.codec_context.thread_count = 1  # one CPU per Ray task; parallelism comes from segments
        if sampling.keyframes:
            stream.codec_context.skip_frame = "NONKEY"
        rate = Fraction(frame_rate(stream)).limit_denominator(1000)
        recorded_at = recorded_time(seg.recorded_at)
        selector = FrameSelector(sampling)
        errors: list[str] = []
        coverage = [Fraction(-1)]  # latest packet time demuxed: how far the data reaches
        for t, frame in frames_from(container, stream, seg, errors, coverage):
            if t < seg.start:
                continue
            if seg.end is not None and t >= seg.end:
                break
            index = round(t * rate)
            if selector.keep(t, index):
                yield {**base, "frame": frame.to_image(), "frame_index": index, "pts_s": float(t),
                       "wall_time": at(recorded_at, t)}
    if problem := decode_problems(seg, coverage[0], errors):
        yield {**base, "pts_s": float(max(coverage[0], 0)), "error": problem}


def decode_problems(seg: Segment, reached: Fraction, errors: list[str]) -> str | None:
    """What went wrong decoding a segment, in words, or None: data that stops before it should
    (`reached`: the latest packet time demuxed) and packets that would not decode. An intact file
    has data up to the segment's end (the first frame past it stops the decode) and up to about the
    duration its header gives (headers may overstate it a little)."""
    span = f"[{float(seg.start):g} s, {'end' if seg.end is None else f'{float(seg.end):g} s'})"
    header_end = seg.duration_s - TRUNCATION_SLACK_S if seg.duration_s else None
    ends = [Fraction(e).limit_denominator(1000) for e in (seg.end, header_end) if e is not None]
    problems = []
    if ends and reached < min(ends):
        reach = f"data stops at {float(reached):.2f} s" if reached >= 0 else "no data"
        problems.append(f"video ends early in {span}: {reach}, expected up to {float(min(ends)):.2f} s "
                        f"(truncated or corrupt file)")
    if errors:
        problems.append(f"{len(errors)} packet(s) of {span} would not decode, the frames between were skipped "
                        f"(damaged data; FFmpeg: {errors[0]})")
    return "; ".join(problems) or None


def frames_at(uri: str, times, opts: StorageOptions, gap_s: float = 5.0) -> dict:
    """The frames shown at each of `times` (seconds into the video) as PIL images, keyed by time;
    those past the video's end are missing. One pass over the file: a seek like a segment's (to the
    keyframe before) for each run of times closer than `gap_s`, then decoding forward."""
    wanted = sorted(set(times))
    found, i = {}, 0
    with open_video(uri, opts) as c:
        while i < len(wanted):
            start = Fraction(wanted[i]).limit_denominator(1_000_000)
            frames = frames_from(c, c.streams.video[0], Segment(uri, "", start, None), [], [Fraction(0)])
            for ts, frame in frames:
                while i < len(wanted) and ts >= Fraction(wanted[i]).limit_denominator(1_000_000) - Fraction(1, 1000):
                    found[wanted[i]] = frame.to_image()
                    i += 1
                if i == len(wanted) or (ts >= start and wanted[i] - ts > gap_s):  # past this seek's start
                    break
            else:
                break  # the video ends before the times left
            frames.close()
    return found

