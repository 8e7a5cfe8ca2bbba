"""A run's loss history from its metrics.jsonl: points per step and Customizer's per-epoch figures.

The runtime appends one JSON line per log event ({step, epoch, train_loss, val_loss, ...}). A
reader may see a half-written last line, and a record is input like any other: lines that do not
parse, or hold non-finite numbers, are skipped. Parsed files are cached by size and mtime, so a
status poll of a long run does not re-read thousands of lines.
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from ftc.compiler import records

METRICS_FILE = "metrics.jsonl"
CACHE_SIZE = 256
METRICS_TAIL = 4 << 20  # bytes of metrics.jsonl read (about 20,000 log lines)
MAX_POINTS = 5000  # points per curve kept (the latest)


@dataclass(frozen=True)
class Point:
    step: int
    epoch: float
    value: float


@dataclass(frozen=True)
class LossHistory:
    train: list[Point] = field(default_factory=list)
    val: list[Point] = field(default_factory=list)

    def per_epoch(self) -> list[dict]:
        """The last train and val loss logged in each epoch (epoch e covers (e-1, e])."""
        epochs: dict[int, dict] = {}
        for key, points in (("train_loss", self.train), ("val_loss", self.val)):
            for p in points:
                number = max(1, math.ceil(p.epoch - 1e-9))
                epochs.setdefault(number, {"epoch": number, "train_loss": None, "val_loss": None})[key] = p.value
        return [epochs[k] for k in sorted(epochs)]


def _finite(value) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def parse(text: str) -> LossHistory:
    history = LossHistory()
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if not isinstance(row, dict):
            continue
        step, epoch = row.get("step"), _finite(row.get("epoch"))
        if not isinstance(step, int) or isinstance(step, bool) or epoch is None:
            continue
        for key, points in (("train_loss", history.train), ("val_loss", history.val)):
            value = _finite(row.get(key))
            if value is not None:
                points.append(Point(step, epoch, value))
    del history.train[:-MAX_POINTS], history.val[:-MAX_POINTS]
    return history


_cache: OrderedDict[tuple, LossHistory] = OrderedDict()
_lock = threading.Lock()


def read(run_dir: Path) -> LossHistory:
    """The history in the last METRICS_TAIL bytes of metrics.jsonl, read through records (a regular
    file inside the run folder); a link, FIFO or device in its place is no history."""
    path = Path(run_dir) / METRICS_FILE
    try:
        fd = records.open_regular(path, inside=Path(run_dir))
    except records.RecordError:
        return LossHistory()
    if fd is None:
        return LossHistory()
    try:
        info = os.fstat(fd)
    finally:
        os.close(fd)
    key = (str(path), info.st_ino, info.st_mtime_ns, info.st_size)
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    try:
        history = parse((records.read_tail(path, METRICS_TAIL, inside=Path(run_dir)) or ("", False))[0])
    except records.RecordError:
        return LossHistory()
    with _lock:
        _cache[key] = history
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return history
