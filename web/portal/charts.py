"""Trend charts of readings as inline SVG, drawn on the server: no script, no library.

An accessible chart (https://service-manual.nhs.uk/accessibility): a title and description
for screen readers, and the page shows the same values in a table beside it.
"""

from __future__ import annotations

from datetime import datetime
from html import escape

WIDTH, HEIGHT = 600, 220
PAD_L, PAD_R, PAD_T, PAD_B = 48, 16, 16, 36
COLOURS = ("#005eb8", "#d5281b")  # NHS blue, NHS red: contrast above 4.5:1 on white


def _when(text: str) -> float:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() if "T" in text \
            else datetime.fromisoformat(text[:10]).timestamp()
    except ValueError:
        return 0.0


def trend(title: str, unit: str, series: dict[str, list[tuple[str, float]]]) -> str:
    """An SVG line chart of one or more series of (date, value); "" with fewer than 1 point."""
    points = [(d, v) for values in series.values() for d, v in values]
    if not points:
        return ""
    times = [_when(d) for d, _ in points]
    values = [v for _, v in points]
    t0, t1 = min(times), max(times)
    lo, hi = min(values), max(values)
    span = (hi - lo) or max(abs(hi) * 0.1, 1.0)
    lo, hi = lo - span * 0.1, hi + span * 0.1
    inner_w, inner_h = WIDTH - PAD_L - PAD_R, HEIGHT - PAD_T - PAD_B

    def x(t: float) -> float:
        return PAD_L + (inner_w * (t - t0) / (t1 - t0) if t1 > t0 else inner_w / 2)

    def y(v: float) -> float:
        return PAD_T + inner_h * (1 - (v - lo) / (hi - lo))

    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
             f'aria-labelledby="t-{id(series)} d-{id(series)}" xmlns="http://www.w3.org/2000/svg">',
             f'<title id="t-{id(series)}">{escape(title)}</title>',
             f'<desc id="d-{id(series)}">{len(points)} readings from '
             f'{escape(min(points)[0][:10])} to {escape(max(points)[0][:10])}, between '
             f'{min(values):g} and {max(values):g} {escape(unit)}</desc>']
    for i in range(5):  # gridlines with their values
        v = lo + (hi - lo) * i / 4
        parts.append(f'<line x1="{PAD_L}" x2="{WIDTH - PAD_R}" y1="{y(v):.1f}" y2="{y(v):.1f}" '
                     'class="grid"/>')
        parts.append(f'<text x="{PAD_L - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.3g}</text>')
    ends = (("first", t0), ("last", t1)) if t1 > t0 else (("only", t0),)
    for label, t in ends:
        day = datetime.fromtimestamp(t).strftime("%d %b %Y")
        anchor = {"first": "start", "last": "end", "only": "middle"}[label]
        parts.append(f'<text x="{x(t):.1f}" y="{HEIGHT - 10}" text-anchor="{anchor}">{day}</text>')
    for (name, values), colour in zip(series.items(), COLOURS, strict=False):
        ordered = sorted((_when(d), v) for d, v in values)
        path = " ".join(f"{'M' if i == 0 else 'L'}{x(t):.1f},{y(v):.1f}"
                        for i, (t, v) in enumerate(ordered))
        parts.append(f'<path d="{path}" fill="none" stroke="{colour}" stroke-width="2.5">'
                     f'<title>{escape(name)}</title></path>')
        parts.extend(f'<circle cx="{x(t):.1f}" cy="{y(v):.1f}" r="4" fill="{colour}"/>'
                     for t, v in ordered)
    parts.append("</svg>")
    return "".join(parts)
