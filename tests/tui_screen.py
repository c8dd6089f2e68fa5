"""Reading a Textual app's screen through public API only: each panel's rendered lines at its region.

The terminal view's panels tile the screen, so placing each ``Static``'s ``render_lines`` at its
``region`` gives the text a person reads, cell by cell; ``Screen.get_style_at`` gives the
composited style of one cell.
"""
from __future__ import annotations

from typing import Any, NamedTuple

from rich.cells import cell_len
from rich.style import Style
from textual.geometry import Region
from textual.widgets import Static


def _panels(app: Any) -> list[tuple[Region, list[Any]]]:
    out = []
    for widget in app.screen.query(Static):
        region = widget.region
        if region.width and region.height:
            out.append((region, widget.render_lines(Region(0, 0, region.width, region.height))))
    return out


def screen_cells(app: Any) -> list[str]:
    """The screen as lines of cells (a wide character and the cell it covers count as one cell each)."""
    width, height = app.size
    grid = [[" "] * width for _ in range(height)]
    for region, strips in _panels(app):
        for dy, strip in enumerate(strips):
            y = region.y + dy
            if not 0 <= y < height:
                continue
            x = region.x
            for seg in strip:
                for ch in seg.text:
                    if 0 <= x < width:
                        grid[y][x] = ch
                    x += max(1, cell_len(ch))
    return ["".join(row) for row in grid]


def screen_text(app: Any) -> str:
    """What a person would read, line by line."""
    return "\n".join(screen_cells(app))


class Drawn(NamedTuple):
    """A drawn run of text and its style (``Style()`` where it has none)."""

    text: str
    style: Style


def screen_segments(app: Any) -> list[Drawn]:
    """Every drawn segment with its style, panel by panel."""
    return [Drawn(seg.text, seg.style or Style()) for _, strips in _panels(app) for strip in strips for seg in strip]


def brightness(style: Style) -> int:
    """The sum of a style's foreground RGB: dimmer text has less."""
    assert style.color is not None, f"{style} has no colour"
    return sum(style.color.get_truecolor())


def styles_at(app: Any, x: int, y: int) -> Style:
    """The composited style of the cell at ``(x, y)``."""
    return app.screen.get_style_at(x, y)
