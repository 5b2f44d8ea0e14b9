"""Inline SVG charts rendered on the server (no script, no external files): pure functions to markup."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from html import escape

COLOURS = {"green": "#2e8b57", "yellow": "#d4a017", "red": "#c0392b"}
BAR = "#3b6ea5"


def stacked_hours(hours: list[Counter[str]], start: float, keys: tuple[str, ...], title: str,
                  width: int = 560, height: int = 170) -> str:
    """A stacked bar per hour (``keys`` bottom to top), with a y scale and hour labels every 3 hours."""
    left, bottom, top = 34, 22, 8
    plot_w, plot_h = width - left - 6, height - bottom - top
    peak = max([sum(h[k] for k in keys) for h in hours] + [1])
    step = _nice_step(peak)
    scale_max = step * -(-peak // step)
    slot = plot_w / max(len(hours), 1)
    parts = [f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
             f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>']
    for tick in range(0, scale_max + 1, step):
        y = top + plot_h - tick / scale_max * plot_h
        parts.append(f'<line x1="{left}" x2="{width - 6}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
                     f'<text x="{left - 4}" y="{y + 3:.1f}" class="axis" text-anchor="end">{tick}</text>')
    for i, hour in enumerate(hours):
        x, y = left + i * slot + 1, float(top + plot_h)
        total = sum(hour[k] for k in keys)
        label = dt.datetime.fromtimestamp(start + i * 3600, dt.UTC).strftime("%H:00")
        for key in keys:
            if hour[key]:
                h = hour[key] / scale_max * plot_h
                y -= h
                parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{slot - 2:.1f}" height="{h:.1f}" '
                             f'fill="{COLOURS.get(key, BAR)}"><title>{label} {escape(key)}: {hour[key]}</title></rect>')
        if total == 0:
            parts.append(f'<rect x="{x:.1f}" y="{top + plot_h - 1}" width="{slot - 2:.1f}" height="1" class="zero"/>')
        if i % 3 == 0:
            parts.append(f'<text x="{x + slot / 2:.1f}" y="{height - 6}" class="axis" '
                         f'text-anchor="middle">{label}</text>')
    parts.append("</svg>")
    return "".join(parts)


def horizontal_bars(counts: Counter[str], title: str, width: int = 460, colour: str = BAR, limit: int = 12,
                    colours: dict[str, str] | None = None) -> str:
    """One labelled bar per key, largest first, in ``colours[key]`` or ``colour`` (a note when empty)."""
    items = counts.most_common(limit)
    if not items:
        return f'<p class="empty">{escape(title)}: none.</p>'
    label_w, row = 190, 22
    height = row * len(items) + 6
    peak = max(n for _, n in items)
    parts = [f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
             f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>']
    for i, (key, n) in enumerate(items):
        y = 3 + i * row
        w = max(2.0, n / peak * (width - label_w - 50))
        parts.append(f'<text x="{label_w - 6}" y="{y + 15}" class="label" text-anchor="end">{escape(key[:32])}</text>'
                     f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row - 6}" '
                     f'fill="{(colours or {}).get(key, colour)}"/>'
                     f'<text x="{label_w + w + 5:.1f}" y="{y + 15}" class="value">{n}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _nice_step(peak: int) -> int:
    """A round tick step giving three to six grid lines up to ``peak``."""
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000):
        if peak / step <= 5:
            return step
    return 10 ** len(str(peak))
