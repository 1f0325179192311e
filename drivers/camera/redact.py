"""Redaction before storage: faces and plates found by Haar cascades, plus every moving region.

What is guaranteed when `redact: true`:
- every region that changed since the last analysis is blurred, found or not by a detector (Haar
  misses profiles turned the other way, small and tilted faces; moving people and cars are where
  faces and plates are);
- when a cascade cannot be loaded or fails, or there is no earlier frame to find motion with, the
  whole frame is blurred (fail closed), and the snapshot says `redaction: "full"`.
What is not: a face or plate that stands still and that no cascade detects stays sharp.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from drivers.camera.analysis import Box

log = logging.getLogger("drivers.camera.redact")

CASCADES = {
    "face": "haarcascade_frontalface_default.xml",
    "profile": "haarcascade_profileface.xml",
    "plate": "haarcascade_russian_plate_number.xml",
}
DETECT_WIDTH = 640  # detectors run on a frame this wide (cost grows with pixels)


@dataclass(slots=True)
class Redaction:
    mode: str  # "regions" or "full"
    faces: int = 0
    plates: int = 0
    moving: int = 0
    reason: str = ""
    boxes: list[Box] = field(default_factory=list)


_lock = threading.Lock()
_cascades: dict[str, Any] | None = None
_load_error = ""


def cascades() -> tuple[dict[str, Any] | None, str]:
    """The loaded cascades (shared, loaded once) or the reason they cannot be used."""
    global _cascades, _load_error
    with _lock:
        if _cascades is None and not _load_error:
            try:
                loaded = {}
                for name, file in CASCADES.items():
                    c = cv2.CascadeClassifier(cv2.data.haarcascades + file)  # type: ignore[attr-defined]
                    if c.empty():
                        raise RuntimeError(f"cascade {file} cannot be loaded")
                    loaded[name] = c
                _cascades = loaded
            except Exception as exc:  # an OpenCV without cascades (5.x) or a broken install
                _load_error = f"{type(exc).__name__}: {exc}"
                log.error("redaction detectors unavailable; whole frames will be blurred: %s", _load_error)
        return _cascades, _load_error


def blur_region(image: np.ndarray[Any, Any], box: Box) -> None:
    """Pixelate then smooth `box` in place: nothing of the detail survives, the scene stays readable."""
    x, y, w, h = box
    if w <= 0 or h <= 0:
        return
    roi = image[y : y + h, x : x + w]
    cell = max(4, min(w, h) // 6)
    small = cv2.resize(roi, (max(1, w // cell), max(1, h // cell)), interpolation=cv2.INTER_AREA)
    coarse = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    k = max(3, (cell // 2) * 2 + 1)
    image[y : y + h, x : x + w] = cv2.GaussianBlur(coarse, (k, k), 0)


def detect(image: np.ndarray[Any, Any], found: dict[str, Any]) -> tuple[list[Box], list[Box]]:
    """(faces, plates) in full-frame pixels; raises when a detector fails."""
    h, w = image.shape[:2]
    scale = min(1.0, DETECT_WIDTH / w)
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    if scale < 1.0:
        grey = cv2.resize(grey, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    grey = cv2.equalizeHist(grey)
    gw = grey.shape[1]

    def run(name: str, img: np.ndarray[Any, Any], mirrored: bool = False) -> list[Box]:
        hits = found[name].detectMultiScale(img, scaleFactor=1.1, minNeighbors=4, minSize=(16, 16))
        out = []
        for x, y, bw, bh in hits if len(hits) else []:
            if mirrored:
                x = gw - x - bw
            pad = int(max(bw, bh) * 0.15)
            out.append(
                (
                    max(0, int((x - pad) / scale)),
                    max(0, int((y - pad) / scale)),
                    int((bw + 2 * pad) / scale),
                    int((bh + 2 * pad) / scale),
                )
            )
        return out

    # the profile cascade only knows faces turned one way: run it on the mirrored frame too
    faces = run("face", grey) + run("profile", grey) + run("profile", cv2.flip(grey, 1), mirrored=True)
    plates = run("plate", grey)
    return faces, plates


def redact(image: np.ndarray[Any, Any], moving: list[Box] | None) -> tuple[np.ndarray[Any, Any], Redaction]:
    """A redacted copy of `image` and what was done."""
    out = image.copy()
    found, error = cascades()
    reason = ""
    if found is None:
        reason = f"detectors unavailable ({error})"
    elif moving is None:
        reason = "no earlier frame to find motion with"
    else:
        try:
            faces, plates = detect(image, found)
        except Exception as exc:
            reason = f"detector failed ({type(exc).__name__}: {exc})"
        else:
            boxes = faces + plates + moving
            for box in boxes:
                blur_region(out, box)
            return out, Redaction("regions", len(faces), len(plates), len(moving), boxes=boxes)
    h, w = image.shape[:2]
    blur_region(out, (0, 0, w, h))
    return out, Redaction("full", reason=reason, boxes=[(0, 0, w, h)])
