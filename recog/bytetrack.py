"""ByteTrack (Zhang et al., 2022) as the `trackers` package implements it (roboflow/trackers 2.1,
Apache-2.0: the same constant-velocity Kalman filter on the box corners, the same two-stage
association), with every track's state in arrays instead of an object per track and a copied
`supervision.Detections` per box: the package's per-object Python was most of tracking's time.
tests/test_bytetrack.py feeds both the same detections and checks they agree, frame by frame.

Each frame: every track's box is predicted; confident detections (score >= `high`) are matched to
the predictions by IoU (Hungarian assignment, at least `min_iou`), then the other detections to the
tracks still unmatched; a confident detection left over (score >= `activate`) starts a track. A
track is confirmed, and gets an id, after `confirm_frames` matches; an unconfirmed one dies the
first frame it is not matched, a confirmed one after `lost_frames` frames without a match.
"""

from __future__ import annotations

import numpy as np

Q = np.float32(0.01)  # process noise (the package's), on the diagonal
R = np.eye(4, dtype=np.float32) * np.float32(0.1)  # measurement noise
EYE8 = np.eye(8, dtype=np.float32)


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of `a` (N, 4) with every box of `b` (M, 4), x1,y1,x2,y2, as supervision's
    box_iou_batch computes it (float64, returned in float32)."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0.0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0.0, None)
    inter = iw * ih
    union = ((a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]))[:, None] + ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))[None, :] - inter
    out = np.zeros(inter.shape, np.float32)
    np.divide(inter, union, out=out, where=union > 0)
    return out


def _unused(n: int, used: np.ndarray) -> np.ndarray:
    """A mask of 0..n-1: True where not in `used`."""
    mask = np.ones(n, bool)
    mask[used] = False
    return mask


class ByteTrack:
    """Tracks over a sequence of frames' detections; `update` gives the confirmed ones' ids."""

    def __init__(self, lost_frames: int, confirm_frames: int, min_iou: float, activate: float = 0.7, high: float = 0.6):
        self.lost_frames, self.confirm_frames, self.min_iou = lost_frames, confirm_frames, min_iou
        self.activate, self.high = activate, high
        self.state = np.zeros((0, 8), np.float32)  # x1, y1, x2, y2 and their velocities
        self.cov = np.zeros((0, 8, 8), np.float32)
        self.hits = np.zeros(0, np.int64)  # matches, the first detection included
        self.since = np.zeros(0, np.int64)  # frames since the last match
        self.ids = np.zeros(0, np.int64)  # -1 until confirmed
        self.next_id = 0

    def __len__(self) -> int:
        return len(self.ids)

    def update(self, boxes: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One frame's detections (N, 4) float32 and their scores -> (ids, boxes) of the detections
        that confirmed tracks matched: first those of the confident stage, then of the other, each
        in the order of the tracks."""
        if not len(self) and not len(boxes):
            return np.zeros(0, np.int64), np.zeros((0, 4), np.float32)
        self._predict()
        high = scores >= self.high
        hi_idx, lo_idx = np.flatnonzero(high), np.flatnonzero(~high)
        rows1, cols1 = self._match(np.arange(len(self)), boxes[hi_idx])
        rows2, cols2 = self._match(np.flatnonzero(_unused(len(self), rows1)), boxes[lo_idx])  # ascending, as the package's sets
        rows, dets = np.concatenate([rows1, rows2]), np.concatenate([hi_idx[cols1], lo_idx[cols2]])
        self._correct(rows, boxes[dets])
        new = hi_idx[_unused(len(hi_idx), cols1)]
        self._start(boxes[new[scores[new] >= self.activate]])
        ids = self.ids[rows]
        self._drop_lost()
        confirmed = ids >= 0
        return ids[confirmed], boxes[dets][confirmed]

    def _predict(self) -> None:
        """x <- F x, P <- F P F' + Q for the constant-velocity F: additions only (exactly what the
        package's matrix products give)."""
        self.state[:, :4] += self.state[:, 4:]
        cov = self.cov
        cov[:, :4, :] += cov[:, 4:, :]
        cov[:, :, :4] += cov[:, :, 4:]
        cov[:, np.arange(8), np.arange(8)] += Q
        self.since += 1

    def _match(self, rows: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Tracks (indices among `rows`, returned as track indices) matched to `boxes` (indices into them)."""
        from scipy.optimize import linear_sum_assignment

        if not len(rows) or not len(boxes):
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        similarity = iou(self.state[rows, :4], boxes)
        r, c = linear_sum_assignment(similarity, maximize=True)
        keep = similarity[r, c] >= self.min_iou
        return rows[r[keep]], c[keep]

    def _correct(self, rows: np.ndarray, boxes: np.ndarray) -> None:
        """The Kalman update of the matched tracks with their detections; a track matched often
        enough is confirmed, and numbered in the order of confirmation."""
        if not len(rows):
            return
        cov = self.cov[rows]
        gain = cov[:, :, :4] @ np.linalg.inv(cov[:, :4, :4] + R)  # P H' S^-1, with H P H' = P[:4, :4]
        residual = boxes[:, :, None] - self.state[rows, :4, None]
        self.state[rows] = self.state[rows] + (gain @ residual)[:, :, 0]
        kh = np.zeros_like(cov)
        kh[:, :, :4] = gain
        self.cov[rows] = (EYE8 - kh) @ cov
        self.since[rows] = 0
        self.hits[rows] += 1
        for row in rows[(self.hits[rows] >= self.confirm_frames) & (self.ids[rows] < 0)]:
            self.ids[row] = self.next_id
            self.next_id += 1

    def _start(self, boxes: np.ndarray) -> None:
        n = len(boxes)
        if not n:
            return
        state = np.zeros((n, 8), np.float32)
        state[:, :4] = boxes
        self.state = np.concatenate([self.state, state])
        self.cov = np.concatenate([self.cov, np.broadcast_to(EYE8, (n, 8, 8))])
        self.hits = np.concatenate([self.hits, np.ones(n, np.int64)])
        self.since = np.concatenate([self.since, np.zeros(n, np.int64)])
        self.ids = np.concatenate([self.ids, np.full(n, -1, np.int64)])

    def _drop_lost(self) -> None:
        """Tracks lost too long go, and unconfirmed ones not matched this frame."""
        alive = (self.since < self.lost_frames) & ((self.hits >= self.confirm_frames) | (self.since == 0))
        if not alive.all():
            self.state, self.cov, self.hits, self.since, self.ids = (
                a[alive] for a in (self.state, self.cov, self.hits, self.since, self.ids))
