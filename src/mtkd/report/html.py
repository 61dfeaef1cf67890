"""``report.html``: the tables and figures of a report on one self-contained page (images inlined, opens offline)."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1400px; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; margin: 1em 0; }
th, td { padding: 0.25em 0.6em; border-bottom: 1px solid #ddd; text-align: right; white-space: nowrap; }
th { white-space: normal; min-width: 4em; vertical-align: bottom; }
th:first-child, td:first-child { text-align: left; }
thead th { border-bottom: 2px solid #444; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption, .caption { color: #555; font-size: 0.9em; max-width: 1100px; }
.missing { color: #8a4b08; font-size: 0.9em; }
.scroll { overflow-x: auto; }
"""


@dataclass
class Section:
    """One dataset's part of the page."""

    heading: str
    caption: str
    table_html: str
    figures: list[tuple[Path | None, str]] = field(default_factory=list)  # (PNG, caption); (None, why not drawn)
    extra_html: str = ""  # after the table (the significance table)


def inline_png(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def render(title: str, intro: str, sections: list[Section], incomplete: list[tuple[str, str]]) -> str:
    """The whole page; ``incomplete`` lists ``(run folder, why)`` for runs left out of the tables (unfinished, or a repeated seed)."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1><p>{html.escape(intro)}</p>"]
    for s in sections:
        parts.append(f"<h2>{html.escape(s.heading)}</h2><p class='caption'>{html.escape(s.caption)}</p>")
        parts.append(f"<div class='scroll'>{s.table_html}</div>{s.extra_html}")
        for png, caption in s.figures:
            if png is None:
                parts.append(f"<p class='missing'>{html.escape(caption)}</p>")
                continue
            parts.append(f"<figure><img src='{inline_png(png)}' alt='{html.escape(png.stem)}'>"
                         f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    if incomplete:
        items = "".join(f"<li><code>{html.escape(p)}</code>: {html.escape(why)}</li>" for p, why in incomplete)
        parts.append(f"<h2>Runs not in the tables</h2><ul>{items}</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)
