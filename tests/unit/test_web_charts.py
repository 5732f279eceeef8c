"""Server-side SVG charts: every bar links to its units, and text from the database is escaped."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from pipeline.web.charts import Bar, column_chart, pareto_chart

SVG = "{http://www.w3.org/2000/svg}"


def test_pareto_bars_are_links_with_cumulative_share_and_escaped_text() -> None:
    bars = [
        Bar('<script>alert("x")</script>', 6, "/units?state=failed&reason=%3Cscript%3E", "6"),
        Bar("no answer", 2, "/units?state=failed&reason=no+answer", "2"),
    ]
    svg = pareto_chart(bars)
    assert "<script>" not in svg
    root = ET.fromstring(svg.replace("<svg ", f'<svg xmlns="{SVG[1:-1]}" ', 1))
    links = root.findall(f"{SVG}a")
    assert [a.get("href") for a in links] == [b.href for b in bars]
    texts = ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]
    assert "6 (75%)" in texts and "2 (100%)" in texts
    assert pareto_chart([]) == '<p class="muted">no failures</p>'


def test_column_chart_scales_to_the_largest_bar() -> None:
    bars = [Bar(f"{h:02d}:00", n, f"/units?h={h}", str(n)) for h, n in enumerate([0, 5, 10])]
    root = ET.fromstring(column_chart(bars).replace("<svg ", f'<svg xmlns="{SVG[1:-1]}" ', 1))
    heights = [float(r.get("height", "0")) for r in root.iter(f"{SVG}rect")]
    assert heights[2] == 2 * heights[1] and heights[0] < 1
