"""``rerank-async bench --report FILE.html|.md``: one self-contained file a person reads.

The command line, the versions and the machine, every table and every plot, the plots
embedded as base64 PNG so the file can be mailed or attached to an issue on its own. The
tables are plain data here (`TableData`), rendered to the terminal (rich), HTML or Markdown.
"""

from __future__ import annotations

import argparse
import base64
import html
import importlib.metadata
import json
import os
import platform
import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from rich.table import Table

from ._common import MissingExtraError

if TYPE_CHECKING:
    from ._bench_cells import CellResult, OpenLoopCell

__all__ = [
    "Plotting",
    "Report",
    "TableData",
    "command_line",
    "environment_tables",
    "load_plotting",
    "machine_info",
    "report_path",
    "rich_table",
    "versions",
    "write_report",
]

# Flags whose value is a secret: shown as _MASK in the recorded command line.
_SECRET_FLAGS: Final = frozenset({"--api-key", "--server-api-key"})
_MASK: Final = "***"
_FORMATS: Final = {".html": "html", ".htm": "html", ".md": "md", ".markdown": "md"}
# Distributions whose versions change what a bench measures.
_DISTRIBUTIONS: Final = ("rerank-async", "httpx", "aiohttp", "anyio", "orjson", "matplotlib")


@dataclass(frozen=True, slots=True)
class TableData:
    """A table as text cells; ``numeric`` columns are right-aligned."""

    title: str
    headers: list[str]
    rows: list[list[str]]
    numeric: frozenset[int] = frozenset()


@dataclass(slots=True)
class Report:
    """Everything a report file holds, in reading order."""

    title: str
    command: str
    environment: list[TableData] = field(default_factory=list)
    tables: list[TableData] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    images: list[tuple[str, bytes]] = field(default_factory=list)


def report_path(text: str) -> str:
    """Check ``--report``'s suffix at parse time, before anything runs."""
    if os.path.splitext(text)[1].lower() not in _FORMATS:
        raise argparse.ArgumentTypeError(f"{text!r}: the report must end in .html or .md")
    return text


def versions() -> dict[str, str]:
    """The Python and package versions behind a run; absent packages are left out."""
    found = {"python": platform.python_version()}
    for name in _DISTRIBUTIONS:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def machine_info() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
    }


class Plotting:
    """The plot functions, once matplotlib has been imported."""

    def __init__(self) -> None:
        from ._plot import grid_png, open_loop_png

        self.grid: Callable[[Sequence[CellResult]], bytes] = grid_png
        self.open_loop: Callable[[Sequence[OpenLoopCell], float | None], bytes] = open_loop_png


def load_plotting(*, required: bool) -> Plotting | None:
    """The plot functions, or ``None`` without matplotlib unless ``required`` (``--plot``).

    Raises:
        MissingExtraError: ``required`` and matplotlib is not installed.
    """
    try:
        return Plotting()
    except ImportError as error:
        if not required:
            return None
        raise MissingExtraError(
            f"--plot needs matplotlib: pip install 'rerank-async[plot]' ({error})"
        ) from error


def command_line(args: argparse.Namespace) -> str:
    """The command as typed, keys masked, for reports (``main`` keeps it in ``args.argv``)."""
    argv = getattr(args, "argv", None)
    words = list(argv if argv is not None else sys.argv[1:])
    masked = []
    hide_next = False
    for word in words:
        flag, equals, _ = word.partition("=")
        if hide_next:
            word, hide_next = _MASK, False
        elif flag in _SECRET_FLAGS:
            word, hide_next = (f"{flag}={_MASK}", False) if equals else (word, True)
        masked.append(word)
    return shlex.join(["rerank-async", *masked])


def environment_tables(settings: dict[str, Any]) -> list[TableData]:
    """Versions, machine and settings, each a two-column table for the report."""

    def text(value: object) -> str:
        return value if isinstance(value, str) else json.dumps(value)

    rows = []
    for key, value in settings.items():
        if isinstance(value, dict):  # the local server's knobs: those that are set
            rows += [[f"{key}.{k}", text(v)] for k, v in value.items() if v is not None]
        else:
            rows.append([key, text(value)])
    return [
        TableData("Versions", ["", ""], [[k, v] for k, v in versions().items()]),
        TableData("Machine", ["", ""], [[k, text(v)] for k, v in machine_info().items()]),
        TableData("Settings", ["", ""], rows),
    ]


def rich_table(data: TableData) -> Table:
    table = Table(title=data.title, title_justify="left")
    for index, header in enumerate(data.headers):
        table.add_column(header, justify="right" if index in data.numeric else "left")
    for row in data.rows:
        table.add_row(*row)
    return table


def write_report(path: str, report: Report) -> None:
    """Write ``report`` as HTML or Markdown, chosen by ``path``'s suffix."""
    kind = _FORMATS[os.path.splitext(path)[1].lower()]
    text = _html(report) if kind == "html" else _markdown(report)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def _generated() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _png_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


_CSS: Final = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px;
       padding: 0 1em; color: #1b1b1b; }
h1 { font-size: 1.6em; } h2 { font-size: 1.2em; margin-top: 1.8em; }
pre { background: #f4f4f4; padding: .6em .8em; overflow-x: auto; white-space: pre-wrap; }
table { border-collapse: collapse; margin: .4em 0 1em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; }
th { background: #f0f0f0; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
td:first-child { white-space: nowrap; }
.side { display: flex; flex-wrap: wrap; gap: 0 2em; align-items: flex-start; }
.side td { font-size: .92em; }
img { max-width: 100%; border: 1px solid #ddd; }
ul { padding-left: 1.3em; }
"""


def _html(report: Report) -> str:
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(report.title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{esc(report.title)}</h1>",
        f"<p>Generated {esc(_generated())}.</p>",
        f"<h2>Command</h2><pre>{esc(report.command)}</pre>",
        "<h2>Environment</h2>",
        '<div class="side">',
        *(f"<div><h3>{esc(t.title)}</h3>{_html_table(t)}</div>" for t in report.environment),
        "</div>",
    ]
    for table in report.tables:
        parts.append(f"<h2>{esc(table.title)}</h2>")
        parts.append(_html_table(table))
    if report.notes:
        parts.append("<ul>" + "".join(f"<li>{esc(note)}</li>" for note in report.notes) + "</ul>")
    for caption, png in report.images:
        parts.append(f"<h2>{esc(caption)}</h2>")
        parts.append(f'<p><img alt="{esc(caption)}" src="{_png_uri(png)}"></p>')
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _html_table(table: TableData) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in table.headers)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="n">{esc(c)}</td>' if i in table.numeric else f"<td>{esc(c)}</td>"
            for i, c in enumerate(row)
        )
        + "</tr>"
        for row in table.rows
    )
    header = f"<thead><tr>{head}</tr></thead>" if any(table.headers) else ""
    return f"<table>{header}<tbody>{body}</tbody></table>"


def _markdown(report: Report) -> str:
    lines = [
        f"# {report.title}",
        "",
        f"Generated {_generated()}.",
        "",
        "## Command",
        "",
        "```bash",
        report.command,
        "```",
        "",
        "## Environment",
        "",
    ]
    for table in report.environment:
        lines += [f"### {table.title}", "", *_markdown_table(table), ""]
    for table in report.tables:
        lines += [f"## {table.title}", "", *_markdown_table(table), ""]
    lines += [f"- {note}" for note in report.notes]
    for caption, png in report.images:
        lines += ["", f"## {caption}", "", f"![{caption}]({_png_uri(png)})"]
    return "\n".join(lines) + "\n"


def _markdown_table(table: TableData) -> list[str]:
    def cells(values: Sequence[str]) -> str:
        return "| " + " | ".join(v.replace("|", "\\|") for v in values) + " |"

    rule = ["---:" if i in table.numeric else "---" for i in range(len(table.headers))]
    return [cells(table.headers), "|" + "|".join(rule) + "|", *(cells(r) for r in table.rows)]
