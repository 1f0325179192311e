"""Parking-space occupancy and motion from a downscaled frame, by difference to an empty reference.

Classical and cheap on purpose (a few ms per analysis on the 2-core box): the frame is shrunk to
`analyse_width`, turned grey and smoothed; a zone is occupied when at least `occupied_fraction`
of its pixels differ from the empty reference by more than `threshold` grey levels. The reference
is the mean of the first `reference_frames` analysed frames, or of the next ones after the
`capture_reference` command. A zone's reported state changes only after the new state has held
for `hold` seconds (debounce: a person walking across a space is not a car). Motion is the share
of pixels that changed since the previous analysis; its boxes tell redaction where to blur.

Known limits: a strong change of light (dusk, headlights) also differs from the reference; take a
new reference then (or at a quiet hour from a rule writing `capture_reference`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from drivers.camera.config import CameraDevice

Box = tuple[int, int, int, int]  # x, y, w, h in full-frame pixels


@dataclass(slots=True)
class ZoneState:
    reported: bool | None = None
    candidate: bool | None = None
    since: float = 0.0
    fraction: float = 0.0


@dataclass(slots=True)
class Analysis:
    motion_pct: float
    changed: dict[str, bool] = field(default_factory=dict)  # zones whose reported state changed
    reference_ready: bool = False


class ZoneAnalyser:
    """Not thread-safe: the driver runs one analysis at a time (in a worker thread)."""

    def __init__(self, device: CameraDevice) -> None:
        self.device = device
        self.zones = {z.name: ZoneState() for z in device.zones}
        self.reference: np.ndarray[Any, Any] | None = None
        self._reference_acc: list[np.ndarray[Any, Any]] = []
        self._masks: dict[str, np.ndarray[Any, Any]] = {}
        self._mask_size: tuple[int, int] | None = None
        self.prev: np.ndarray[Any, Any] | None = None
        # the last two analysed frames (seq, grey): motion for a snapshot is found against one
        # that is not the snapshot's own frame
        self.history: deque[tuple[int, np.ndarray[Any, Any]]] = deque(maxlen=2)
        self.analysed = 0

    def small_grey(self, image: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        h, w = image.shape[:2]
        width = min(self.device.analyse_width, w)
        height = max(1, round(h * width / w))
        small = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY) if small.ndim == 3 else small
        return cv2.GaussianBlur(grey, (5, 5), 0)

    def recapture_reference(self) -> None:
        self.reference = None
        self._reference_acc.clear()

    def _masks_for(self, size: tuple[int, int]) -> dict[str, np.ndarray[Any, Any]]:
        if self._mask_size != size:
            w, h = size
            self._masks = {}
            for z in self.device.zones:
                pts = np.array([[round(x * (w - 1)), round(y * (h - 1))] for x, y in z.polygon], np.int32)
                mask = np.zeros((h, w), np.uint8)
                cv2.fillPoly(mask, [pts], 255)
                self._masks[z.name] = mask > 0
            self._mask_size = size
        return self._masks

    def analyse(self, image: np.ndarray[Any, Any], now: float, seq: int = 0) -> Analysis:
        """One analysis of frame `seq`, taken at monotonic time `now`."""
        grey = self.small_grey(image)
        self.analysed += 1
        threshold = self.device.threshold
        motion = 0.0
        if self.prev is not None and self.prev.shape == grey.shape:
            moved = cv2.absdiff(grey, self.prev) > threshold
            motion = 100.0 * float(np.count_nonzero(moved)) / moved.size
        self.prev = grey
        self.history.append((seq, grey))
        result = Analysis(round(motion, 2))
        if self.reference is None or self.reference.shape != grey.shape:
            self.reference = None
            self._reference_acc.append(grey.astype(np.float32))
            if len(self._reference_acc) < self.device.reference_frames:
                return result
            self.reference = np.mean(self._reference_acc, axis=0).astype(np.uint8)
            self._reference_acc.clear()
        result.reference_ready = True
        differs = cv2.absdiff(grey, self.reference) > threshold
        masks = self._masks_for((grey.shape[1], grey.shape[0]))
        for name, state in self.zones.items():
            mask = masks[name]
            area = int(np.count_nonzero(mask))
            state.fraction = float(np.count_nonzero(differs & mask)) / area if area else 0.0
            raw = state.fraction >= self.device.occupied_fraction
            if state.reported is None:  # the first decision needs no debounce
                state.reported = raw
                result.changed[name] = raw
            elif raw == state.reported:
                state.candidate = None
            elif state.candidate != raw:
                state.candidate, state.since = raw, now
            elif now - state.since >= self.device.hold:
                state.reported, state.candidate = raw, None
                result.changed[name] = raw
        return result

    def moving_boxes(self, image: np.ndarray[Any, Any], seq: int) -> list[Box] | None:
        """Regions of frame `seq` that differ from the analysed frames before it, in full-frame
        pixels (padded); None when there is nothing to compare with (redaction then treats the
        frame as uncertain)."""
        grey = self.small_grey(image)
        earlier = [g for s, g in list(self.history) if s != seq and g.shape == grey.shape]
        if not earlier:
            return None
        changed = np.zeros(grey.shape, np.uint8)
        for prev in earlier:
            changed[cv2.absdiff(grey, prev) > self.device.threshold] = 255
        grown = cv2.dilate(changed, np.ones((5, 5), np.uint8), iterations=2)
        contours, _ = cv2.findContours(grown, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        h, w = image.shape[:2]
        sx, sy = w / grey.shape[1], h / grey.shape[0]
        boxes: list[Box] = []
        for c in contours:
            x, y, bw, bh = cv2.boundingRect(c)
            pad_x, pad_y = max(2, bw // 5), max(2, bh // 5)
            x0, y0 = max(0, int((x - pad_x) * sx)), max(0, int((y - pad_y) * sy))
            x1, y1 = min(w, int((x + bw + pad_x) * sx) + 1), min(h, int((y + bh + pad_y) * sy) + 1)
            boxes.append((x0, y0, x1 - x0, y1 - y0))
        return boxes
