"""Loss curves as inline SVG: a sparkline for the runs list and a chart with axes for a run's page.

Only numbers computed here enter the markup, so it needs no escaping.
"""

from __future__ import annotations

from ftc.compiler.api.metrics import Point

TRAIN_COLOUR, VAL_COLOUR = "#2563eb", "#dc2626"


def _scale(series: list[list[Point]], width: float, height: float, pad: tuple[float, float, float, float]):
    left, right, top, bottom = pad
    points = [p for s in series for p in s]
    x0, x1 = min(p.step for p in points), max(p.step for p in points)
    y0, y1 = min(p.value for p in points), max(p.value for p in points)
    if x1 == x0:
        x1 = x0 + 1
    if y1 == y0:
        y0, y1 = y0 - 0.5, y1 + 0.5

    def at(p: Point) -> tuple[float, float]:
        x = left + (p.step - x0) / (x1 - x0) * (width - left - right)
        y = top + (y1 - p.value) / (y1 - y0) * (height - top - bottom)
        return round(x, 1), round(y, 1)

    return at, (x0, x1, y0, y1)


def _path(points: list[Point], at) -> str:
    return " ".join(f"{x},{y}" for x, y in map(at, points))


def sparkline(train: list[Point], val: list[Point], width: int = 120, height: int = 28) -> str:
    if not train and not val:
        return ""
    at, _ = _scale([train, val], width, height, (1, 1, 2, 2))
    lines = [f'<polyline class="{cls}" fill="none" stroke="{colour}" stroke-width="1.5" points="{_path(s, at)}"/>'
             for s, cls, colour in ((train, "train", TRAIN_COLOUR), (val, "val", VAL_COLOUR)) if s]
    return (f'<svg class="sparkline" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            f'role="img" aria-label="loss sparkline">{"".join(lines)}</svg>')


def loss_chart(train: list[Point], val: list[Point], width: int = 720, height: int = 300) -> str:
    if not train and not val:
        return '<p class="empty">no losses logged yet</p>'
    pad = (56, 16, 16, 40)
    at, (x0, x1, y0, y1) = _scale([train, val], width, height, pad)
    left, right, top, bottom = pad
    frame = (f'<rect x="{left}" y="{top}" width="{width - left - right}" height="{height - top - bottom}" '
             'fill="none" stroke="#d1d5db"/>')
    parts = [frame]
    for i in range(5):
        value = y0 + (y1 - y0) * i / 4
        y = round(top + (y1 - value) / (y1 - y0) * (height - top - bottom), 1)
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y}" y2="{y}" stroke="#f3f4f6"/>'
                     f'<text x="{left - 6}" y="{y + 4}" text-anchor="end" font-size="11">{value:.3g}</text>')
    for i in range(5):
        step = x0 + (x1 - x0) * i / 4
        x = round(left + (step - x0) / (x1 - x0) * (width - left - right), 1)
        parts.append(f'<text x="{x}" y="{height - bottom + 16}" text-anchor="middle" font-size="11">{step:.0f}</text>')
    parts.append(f'<text x="{(left + width - right) / 2}" y="{height - 6}" text-anchor="middle" font-size="12">step</text>')
    for series, cls, colour, label, row in ((train, "train", TRAIN_COLOUR, "train loss", 0),
                                            (val, "val", VAL_COLOUR, "val loss", 1)):
        if not series:
            continue
        parts.append(f'<polyline class="{cls}" fill="none" stroke="{colour}" stroke-width="2" points="{_path(series, at)}"/>')
        if len(series) < 40:
            parts += [f'<circle cx="{x}" cy="{y}" r="2.5" fill="{colour}"/>' for x, y in map(at, series)]
        parts.append(f'<text x="{width - right - 90}" y="{top + 16 + 16 * row}" font-size="12" fill="{colour}">'
                     f'&#9632; {label}</text>')
    return (f'<svg id="loss-chart" class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            f'role="img" aria-label="loss curves">{"".join(parts)}</svg>')
