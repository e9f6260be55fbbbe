"""The vehicles job's tables: labeled crops of tracked vehicles -> one row per vehicle and one row
per line crossing.

Each track of a segment reaches the driver as a few labeled crops (recog.track chose its largest,
sharpest views; the predictor labeled each). A vehicle's label is the score-weighted vote of its
crops: each crop adds its score to its label, the label with the most wins, and its share of the
total is the vehicle's score; the votes are kept. Its fine class (the model's own class, e.g.
`juggernaut`) is voted the same way among the crops that voted for its label.

    vehicles    camera, source, track, when it was first and last seen, where it entered and left
                the picture, its direction, label, fine class, score, votes, its best crop
    crossings   one row per counted crossing of a named line: line, direction (in/out), time,
                track, the vehicle's label and score
"""

from __future__ import annotations

import collections
import datetime as dt
import json

import pyarrow as pa
import pyarrow.compute as pc

from recog import video
from recog.taxonomy import NOT_VEHICLE

_TS = pa.timestamp("ms", tz="UTC")
CROP_AT = pa.struct([("pts_s", pa.float64()), ("frame_index", pa.int64()), ("box", pa.list_(pa.int32()))])


def _doc(name: str, type_: pa.DataType, doc: str) -> pa.Field:
    return pa.field(name, type_, metadata={"doc": doc})


VEHICLES_SCHEMA = pa.schema([
    _doc("camera", pa.string(), "camera, from the video's .json sidecar or file name"),
    _doc("source_uri", pa.string(), "the video file"),
    _doc("track_id", pa.int64(), "the vehicle's track: unique within its video"),
    _doc("first_pts_s", pa.float64(), "first seen, seconds into the video"),
    _doc("last_pts_s", pa.float64(), "last seen, seconds into the video"),
    _doc("first_seen", _TS, "first seen, wall-clock time (when the recording's start is known)"),
    _doc("last_seen", _TS, "last seen, wall-clock time"),
    _doc("frames_seen", pa.int32(), "frames the track was seen in"),
    _doc("entry_x", pa.float32(), "where it entered: bottom-centre of its box, fraction of the frame's width"),
    _doc("entry_y", pa.float32(), "... fraction of the frame's height"),
    _doc("exit_x", pa.float32(), "where it left, fraction of the width"),
    _doc("exit_y", pa.float32(), "... fraction of the height"),
    _doc("direction", pa.string(), "direction of travel in the picture: up, down-left, ... or still"),
    _doc("heading_deg", pa.float32(), "direction of travel in degrees (0 = right, 90 = down)"),
    _doc("lines", pa.list_(pa.string()), "the lines it crossed, as line:direction"),
    _doc("label", pa.string(), "vehicle type, the score-weighted vote of its crops"),
    _doc("fine_label", pa.string(), "the model's own class (e.g. juggernaut), voted the same way"),
    _doc("score", pa.float32(), "the label's share of the votes"),
    _doc("votes", pa.string(), "the votes, as JSON {label: summed score}"),
    _doc("crops", pa.int32(), "crops classified"),
    _doc("best_pts_s", pa.float64(), "time of its best crop, seconds into the video"),
    _doc("best_frame_index", pa.int64(), "frame of its best crop"),
    _doc("best_box", pa.list_(pa.int32()), "box of its best crop in that frame, x1,y1,x2,y2 pixels"),
    _doc("crops_at", pa.list_(CROP_AT), "where each of its crops was cut, best first: time, frame, box (recog crops cuts them again)"),
    _doc("warning", pa.string(), "why its crossings were not counted (not a vehicle, a phantom flood), if so"),
    _doc("error", pa.string(), "why there is no label (no usable crop, a video that would not decode)"),
    _doc("model", pa.string(), "classifier"),
    _doc("model_version", pa.string(), "sha256 prefix of its weights"),
    _doc("detector", pa.string(), "motion, or the detection model"),
    _doc("detector_version", pa.string(), "hash of the detector's settings (and weights)"),
    _doc("date", pa.date32(), "UTC day first seen; with camera, the partition the row is stored in"),
    _doc("run_id", pa.string(), "the run that wrote the row"),
    _doc("unit_id", pa.string(), "unit of work (a video segment)"),
])

CROSSINGS_SCHEMA = pa.schema([
    _doc("line", pa.string(), "the line's name (--line NAME=...)"),
    _doc("direction", pa.string(), "in: to the side where the line's cross product is negative (up, for a left-to-right line); out: the other way"),
    _doc("pts_s", pa.float64(), "when the vehicle's anchor reached the other side, seconds into the video"),
    _doc("frame_index", pa.int64(), "that frame"),
    _doc("wall_time", _TS, "that moment, wall-clock time (when the recording's start is known)"),
    _doc("track_id", pa.int64(), "the vehicle (vehicles.track_id)"),
    _doc("label", pa.string(), "the vehicle's type"),
    _doc("fine_label", pa.string(), "the model's own class"),
    _doc("score", pa.float32(), "the label's share of the votes"),
    _doc("camera", pa.string(), "camera"),
    _doc("source_uri", pa.string(), "the video file"),
    _doc("date", pa.date32(), "UTC day of wall_time; with camera, the partition"),
    _doc("run_id", pa.string(), "the run that wrote the row"),
    _doc("unit_id", pa.string(), "unit of work (a video segment)"),
])


def vote(crops: list[dict]) -> tuple[str | None, float | None, dict, str | None]:
    """(label, score, votes, fine label) of a track from its labeled crops (`label`, `score`,
    `topk_labels`, `topk_scores`): each crop adds its score to its label."""
    votes: dict[str, float] = collections.Counter()
    for c in crops:
        if c["label"] is not None:
            votes[c["label"]] += c["score"]
    if not votes:
        return None, None, {}, None
    label = max(votes, key=lambda k: (votes[k], k))
    fine: dict[str, float] = collections.Counter()
    for c in crops:
        if c["label"] == label and c["topk_labels"]:  # the fine class among the crops that voted for the label
            fine[c["topk_labels"][0]] += c["topk_scores"][0]
    total = sum(votes.values())
    return label, votes[label] / total if total else 0.0, {k: round(v, 4) for k, v in votes.most_common()}, \
        max(fine, key=lambda k: (fine[k], k)) if fine else None


class VehicleTables:
    """A complete unit's labeled crops -> {"vehicles": ..., "crossings": ...} (the sink's table maker)."""

    names = ("vehicles", "crossings")

    def __init__(self, detector: str, detector_version: str):
        self.detector, self.detector_version = detector, detector_version

    def __call__(self, rows: pa.Table, run_id: str) -> dict[str, pa.Table]:
        rows = rows.sort_by("record")
        ends = rows.filter(rows.column("end"))
        segment = json.loads(ends.column("meta")[0].as_py() or "{}") if ends.num_rows else {}
        crops = rows.filter(pc.invert(rows.column("end"))).to_pylist()
        unit = ends.column("unit_id")[0].as_py() if ends.num_rows else None
        start = video.recorded_time(segment.get("recorded_at"))
        by_track: dict[str, list[dict]] = {}
        for c in crops:
            by_track.setdefault(c["key"], []).append(c)
        vehicles, crossings = [], []
        for group in by_track.values():
            track = json.loads(group[0]["meta"])
            label, score, votes, fine = vote(group)
            warning = None
            if label == NOT_VEHICLE:
                warning = "not a vehicle: its crops look like background (road, shadow, overlay text); its crossings are not counted"
            elif track["suspect"]:
                warning = "phantom flood: confirmed among too many new tracks at once (lighting change or camera shake?); " \
                          "its crossings are not counted"
            first = group[0]
            best = track["crops"][0] if track["crops"] else None
            common = {"camera": first["camera"], "source_uri": first["source_uri"], "run_id": run_id, "unit_id": unit}
            vehicles.append({**common, "track_id": track["track_id"], "first_pts_s": track["first_t"],
                             "last_pts_s": track["last_t"], "first_seen": video.at(start, track["first_t"]),
                             "last_seen": video.at(start, track["last_t"]), "frames_seen": track["frames_seen"],
                             "entry_x": track["entry"][0], "entry_y": track["entry"][1], "exit_x": track["exit"][0],
                             "exit_y": track["exit"][1], "direction": track["direction"], "heading_deg": track["heading_deg"],
                             "lines": [f"{c['line']}:{c['direction']}" for c in track["crossings"]],
                             "label": label, "fine_label": fine, "score": score, "votes": json.dumps(votes),
                             "crops": sum(1 for c in group if c["label"] is not None),
                             "best_pts_s": best["t"] if best else None, "best_frame_index": best["frame"] if best else None,
                             "best_box": best["box"] if best else None,
                             "crops_at": [{"pts_s": c["t"], "frame_index": c["frame"], "box": c["box"]} for c in track["crops"]],
                             "warning": warning,
                             "error": next((c["error"] for c in group if c["error"]), None) if label is None else None,
                             "model": first["model"], "model_version": first["model_version"],
                             "detector": self.detector, "detector_version": self.detector_version,
                             "date": _day(video.at(start, track["first_t"]))})
            crossings += [{**common, "line": c["line"], "direction": c["direction"], "pts_s": c["t"], "frame_index": c["frame"],
                           "wall_time": video.at(start, c["t"]), "track_id": track["track_id"], "label": label,
                           "fine_label": fine, "score": score, "date": _day(video.at(start, c["t"]))}
                          for c in track["crossings"] if warning is None]
        if segment.get("error") and unit:  # a segment that would not (all) decode: said in a row of its own
            vehicles.append({"camera": segment.get("camera"), "source_uri": segment.get("source_uri"), "error": segment["error"],
                             "detector": self.detector, "detector_version": self.detector_version, "run_id": run_id,
                             "unit_id": unit, "date": None})
        return {"vehicles": pa.Table.from_pylist(vehicles, schema=VEHICLES_SCHEMA),
                "crossings": pa.Table.from_pylist(sorted(crossings, key=lambda c: c["pts_s"]), schema=CROSSINGS_SCHEMA)}


def _day(t: dt.datetime | None) -> dt.date | None:
    return t.astimezone(dt.timezone.utc).date() if t else None
