"""Small inline SVG charts rendered on the server: no JavaScript library, no build step.

Every bar is a link to the units behind it. Pure functions of their input; text is escaped here because
the templates insert the markup as-is.

Responsible for: the throughput column chart and the horizontal Pareto bars.
Not responsible for: which data is shown (pipeline.web.live).
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape


@dataclass(frozen=True, slots=True)
class Bar:
    """One bar: its label, value, link and hover title."""

    label: str
    value: int
    href: str
    title: str


def column_chart(bars: list[Bar], *, width: int = 480, height: int = 150, label_every: int = 4) -> str:
    """Vertical bars left to right (a time series), x labels on every `label_every`-th bar."""
    top = max((b.value for b in bars), default=0) or 1
    plot_h, pad = height - 24, 28
    step = (width - pad) / max(1, len(bars))
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-label="units assigned per interval">',
        f'<text x="0" y="12" class="axis">{top}</text><text x="0" y="{plot_h}" class="axis">0</text>',
    ]
    for i, bar in enumerate(bars):
        x, h = pad + i * step, plot_h * bar.value / top
        parts.append(
            f'<a href="{escape(bar.href)}"><rect x="{x:.1f}" y="{plot_h - h:.1f}" '
            f'width="{max(1.0, step - 2):.1f}" '
            f'height="{max(h, 0.5):.1f}" class="bar"><title>{escape(bar.title)}</title></rect></a>'
        )
        if i % label_every == 0 and x + 30 < width:
            parts.append(f'<text x="{x:.1f}" y="{height - 6}" class="axis">{escape(bar.label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def pareto_chart(bars: list[Bar], *, width: int = 560, row: int = 24) -> str:
    """Horizontal bars, largest first, each with its count and cumulative share of the total."""
    if not bars:
        return '<p class="muted">no failures</p>'
    total = sum(b.value for b in bars) or 1
    top = max(b.value for b in bars) or 1
    label_w, bar_w = 250, width - 250 - 90
    parts = [f'<svg class="chart" viewBox="0 0 {width} {row * len(bars)}" width="100%" role="img">']
    cumulative = 0
    for i, bar in enumerate(bars):
        cumulative += bar.value
        y, w = i * row, bar_w * bar.value / top
        label = bar.label if len(bar.label) <= 30 else bar.label[:29] + "…"
        parts.append(
            f'<a href="{escape(bar.href)}"><text x="0" y="{y + 16}" class="label">{escape(label)}</text>'
            f'<rect x="{label_w}" y="{y + 3}" width="{max(w, 1):.1f}" height="{row - 6}" class="bar fail">'
            f"<title>{escape(bar.title)}</title></rect>"
            f'<text x="{label_w + w + 6:.1f}" y="{y + 15}" class="count">{bar.value} '
            f"({100 * cumulative / total:.0f}%)</text></a>"
        )
    parts.append("</svg>")
    return "".join(parts)
