"""Training curves from a run's `metrics.json` `log_history`: reward, accuracy, KL and zero-signal fraction vs step.

Drawn twice without plotting libraries: as inline SVG (for the HTML trace browser; axis labels and values) and as
PNG through a tiny rasteriser (lines, axes and tick marks only, no text: the file name says what it plots).
matplotlib is not a dependency of rlft; when it is importable, the PNGs are drawn with it instead (with text).
"""

from __future__ import annotations

import html
import struct
import zlib
from pathlib import Path
from typing import Any

# curve name -> log keys tried in order (TRL GRPO logs, rlft's signal and intent-reward metrics, periodic eval)
CURVES: dict[str, tuple[str, ...]] = {
    "reward": ("reward",),
    "accuracy": ("eval_intent_accuracy", "eval/intent_accuracy", "intent/accuracy", "rewards/intent/mean"),
    "kl": ("kl",),
    "zero_signal_fraction": ("frac_reward_zero_std", "signal/frac_zero_std_first_draw"),
}


def series(log_history: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """{curve: {"key": log key used, "points": [(step, value), ...]}} for the curves the log has."""
    out: dict[str, dict[str, Any]] = {}
    for curve, keys in CURVES.items():
        for key in keys:
            points = [(float(e.get("step", i)), float(e[key])) for i, e in enumerate(log_history)
                      if isinstance(e.get(key), (int, float)) and not isinstance(e.get(key), bool)]
            if points:
                out[curve] = {"key": key, "points": points}
                break
    return out


def _bounds(points: list[tuple[float, float]]) -> tuple[float, float, float, float]:
    """x from the first to the last step; y from the data to zero (a rise from 0.45 to 0.65 must not fill the whole
    height, and a reward that turns negative crosses a drawn zero line)."""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1, y0, y1 = min(xs), max(xs), min(*ys, 0.0), max(*ys, 0.0)
    if x1 == x0:
        x1 = x0 + 1
    if y1 == y0:
        y0, y1 = y0 - 0.5, y1 + 0.5
    return x0, x1, y0, y1


def svg(curve: str, key: str, points: list[tuple[float, float]], width: int = 320, height: int = 180) -> str:
    """A small line chart as an inline <svg> element (text escaped)."""
    x0, x1, y0, y1 = _bounds(points)
    left, right, top, bottom = 44, 8, 22, 24
    pw, ph = width - left - right, height - top - bottom

    def px(x: float, y: float) -> tuple[float, float]:
        return left + (x - x0) / (x1 - x0) * pw, top + (1 - (y - y0) / (y1 - y0)) * ph

    path = " ".join(f"{a:.1f},{b:.1f}" for a, b in (px(x, y) for x, y in points))
    zero = px(x0, 0.0)[1]
    dots = "".join(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="2"/>' for a, b in (px(x, y) for x, y in points))
    title = html.escape(f"{curve} ({key})")
    return (f'<svg class="curve" width="{width}" height="{height}" '
            f'role="img" aria-label="{title}"><text x="{left}" y="14" class="t">{title}</text>'
            f'<line x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}" class="ax"/>'
            f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + ph}" class="ax"/>'
            f'<text x="{left - 4}" y="{top + 4}" class="yl">{y1:.3g}</text>'
            f'<text x="{left - 4}" y="{top + ph}" class="yl">{y0:.3g}</text>'
            + (f'<line x1="{left}" y1="{zero:.1f}" x2="{left + pw}" y2="{zero:.1f}" class="ax zero"/>'
               f'<text x="{left - 4}" y="{zero + 3:.1f}" class="yl">0</text>' if y0 < 0 < y1 else "") +
            f'<text x="{left}" y="{height - 6}" class="xl">{x0:.0f}</text>'
            f'<text x="{left + pw}" y="{height - 6}" class="xl" text-anchor="end">step {x1:.0f}</text>'
            f'<polyline points="{path}" class="ln"/><g class="pt">{dots}</g></svg>')


def _png_bytes(pixels: list[bytearray], width: int, height: int) -> bytes:
    raw = b"".join(b"\x00" + bytes(row) for row in pixels)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def raster_png(points: list[tuple[float, float]], width: int = 480, height: int = 270) -> bytes:
    """RGB PNG of a line chart: white background, grey axes with 5 ticks each, blue line (no text)."""
    pixels = [bytearray(b"\xff" * (width * 3)) for _ in range(height)]

    def put(x: int, y: int, rgb: tuple[int, int, int]) -> None:
        if 0 <= x < width and 0 <= y < height:
            pixels[y][3 * x:3 * x + 3] = bytes(rgb)

    def line(xa: float, ya: float, xb: float, yb: float, rgb: tuple[int, int, int], thick: int = 1) -> None:
        steps = int(max(abs(xb - xa), abs(yb - ya))) + 1
        for s in range(steps + 1):
            t = s / steps
            x, y = round(xa + (xb - xa) * t), round(ya + (yb - ya) * t)
            for dx in range(thick):
                for dy in range(thick):
                    put(x + dx, y + dy, rgb)

    margin = 24
    x0, x1, y0, y1 = _bounds(points)
    pw, ph = width - 2 * margin, height - 2 * margin
    grey, blue = (120, 120, 120), (31, 119, 180)
    line(margin, height - margin, width - margin, height - margin, grey)
    line(margin, margin, margin, height - margin, grey)
    for k in range(5):
        tx = margin + k * pw / 4
        ty = margin + k * ph / 4
        line(tx, height - margin, tx, height - margin + 4, grey)
        line(margin - 4, ty, margin, ty, grey)
    mapped = [(margin + (x - x0) / (x1 - x0) * pw, margin + (1 - (y - y0) / (y1 - y0)) * ph) for x, y in points]
    for (xa, ya), (xb, yb) in zip(mapped, mapped[1:], strict=False):
        line(xa, ya, xb, yb, blue, 2)
    for x, y in mapped:
        line(x - 2, y, x + 2, y, blue, 2)
    return _png_bytes(pixels, width, height)


def _matplotlib_png(curve: str, key: str, points: list[tuple[float, float]], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(4.8, 2.7), dpi=100)
    ax.plot([p[0] for p in points], [p[1] for p in points], marker=".")
    ax.set_ylim(*_bounds(points)[2:])  # zero on the axis, as in the SVG
    ax.axhline(0.0, color="#888", linewidth=0.8)
    ax.set_title(f"{curve} ({key})")
    ax.set_xlabel("step")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def write_pngs(curves: dict[str, dict[str, Any]], out_dir: Path) -> list[Path]:
    """One `curve_<name>.png` per curve (matplotlib when importable, else the built-in rasteriser)."""
    paths = []
    for name, c in curves.items():
        path = out_dir / f"curve_{name}.png"
        if not _matplotlib_png(name, c["key"], c["points"], path):
            path.write_bytes(raster_png(c["points"]))
        paths.append(path)
    return paths
