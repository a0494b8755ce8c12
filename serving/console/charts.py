"""Inline SVG charts drawn on the server (no JavaScript library, nothing fetched at run time).

Each function returns SVG markup; every value is a real figure passed in, labels are escaped.
Data points carry ``data-value`` attributes so tests (and the page's small script) read them.
"""

from __future__ import annotations

from html import escape

from markupsafe import Markup

COLOURS = {"news": "#2563eb", "video": "#dc2626", "ad": "#16a34a"}
_PALETTE = ("#7c3aed", "#ea580c", "#0891b2", "#be185d", "#4d7c0f", "#475569")
WIDTH, HEIGHT, PAD_LEFT, PAD_BOTTOM, PAD_TOP = 640, 220, 48, 28, 12


def _colour(name: str, index: int) -> str:
    return COLOURS.get(name, _PALETTE[index % len(_PALETTE)])


def line_chart(hours: list[str], series: dict[str, list[dict]], title: str) -> Markup:
    """CTR over hours, one polyline per series (points: ``{"hour", "ctr", "impressions"}``)."""
    top = max((p["ctr"] for points in series.values() for p in points), default=0.0) or 1.0
    top *= 1.1
    span = max(len(hours) - 1, 1)
    plot_w, plot_h = WIDTH - PAD_LEFT - 10, HEIGHT - PAD_BOTTOM - PAD_TOP
    position = {hour: i for i, hour in enumerate(hours)}

    def xy(hour: str, value: float) -> tuple[float, float]:
        x = PAD_LEFT + plot_w * position[hour] / span
        return x, PAD_TOP + plot_h * (1 - value / top)

    parts = [
        f'<svg class="chart" role="img" aria-label="{escape(title)}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" data-chart="ctr-by-domain">',
        f"<title>{escape(title)}</title>",
    ]
    for tick in range(5):
        value = top * tick / 4
        _, y = xy(hours[0], value)
        parts.append(
            f'<line class="grid" x1="{PAD_LEFT}" x2="{WIDTH - 10}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="axis" x="{PAD_LEFT - 4}" y="{y + 4:.1f}" text-anchor="end">'
            f"{value:.1%}</text>"
        )
    last = len(hours) - 1
    for index in sorted({0, last // 2, last}):
        x, _ = xy(hours[index], 0)
        anchor = "end" if index == last and last else "start" if index == 0 else "middle"
        parts.append(
            f'<text class="axis" x="{x:.1f}" y="{HEIGHT - 8}" text-anchor="{anchor}">'
            f"{escape(hours[index][5:16].replace('T', ' '))}</text>"
        )
    for index, (name, points) in enumerate(sorted(series.items())):
        colour = _colour(name, index)
        coords = [xy(p["hour"], p["ctr"]) for p in points if p["hour"] in position]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
        parts.append(
            f'<polyline class="series" data-series="{escape(name)}" fill="none" '
            f'stroke="{colour}" stroke-width="2" points="{path}"/>'
        )
        for (x, y), point in zip(coords, points, strict=False):
            label = (
                f"{name} {point['hour'][:13]}h: CTR {point['ctr']:.2%} "
                f"({point['clicks']}/{point['impressions']})"
            )
            parts.append(
                f'<circle class="point" data-series="{escape(name)}" '
                f'data-value="{point["ctr"]:.6f}" cx="{x:.1f}" cy="{y:.1f}" r="3" '
                f'fill="{colour}"><title>{escape(label)}</title></circle>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))


def bar_chart(
    rows: list[dict], label: str, value: str, title: str, name: str = "ctr-by-policy"
) -> Markup:
    """Horizontal bars of ``row[value]`` (a rate) labelled ``row[label]``."""
    bar_h, gap, left = 22, 8, 150
    height = max(len(rows), 1) * (bar_h + gap) + 10
    top = max((r[value] for r in rows), default=0.0) or 1.0
    parts = [
        f'<svg class="chart" role="img" aria-label="{escape(title)}" '
        f'viewBox="0 0 {WIDTH} {height}" width="100%" data-chart="{escape(name)}">',
        f"<title>{escape(title)}</title>",
    ]
    for index, row in enumerate(rows):
        y = 5 + index * (bar_h + gap)
        width = (WIDTH - left - 90) * row[value] / top
        name = escape(str(row[label]))
        parts.append(
            f'<text class="axis" x="{left - 6}" y="{y + 15}" text-anchor="end">{name}</text>'
            f'<rect class="bar" data-series="{name}" data-value="{row[value]:.6f}" x="{left}" '
            f'y="{y}" width="{max(width, 1):.1f}" height="{bar_h}" '
            f'fill="{_colour(str(row[label]), index)}"><title>{name}: {row[value]:.2%} '
            f"({row.get('clicks', '?')}/{row.get('impressions', '?')})</title></rect>"
            f'<text class="axis" x="{left + width + 6:.1f}" y="{y + 15}">{row[value]:.2%}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))
