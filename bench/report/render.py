"""A report as a list of blocks, rendered to Markdown, HTML or LaTeX tables (tabulate).

Table cells mark emphasis as ⟦text⟧; each renderer turns it into its own bold.
Paragraphs and list items use two inline marks only: `code` and **bold**.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

from tabulate import tabulate

BOLD_OPEN, BOLD_CLOSE = "⟦", "⟧"


def bold(text: str) -> str:
    return f"{BOLD_OPEN}{text}{BOLD_CLOSE}"


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Para:
    text: str


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]
    name: str = ""  # a short id: the LaTeX label and file section
    caption: str = ""
    align: list[str] = field(default_factory=list)


@dataclass
class Image:
    path: str  # relative to the report folder
    alt: str


Block = Heading | Para | Bullets | Table | Image


# ---------------------------------------------------------------- Markdown


def _md_cell(text: str) -> str:
    return text.replace(BOLD_OPEN, "**").replace(BOLD_CLOSE, "**").replace("|", "\\|")


def to_markdown(blocks: list[Block]) -> str:
    out: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            out += ["#" * block.level + " " + block.text, ""]
        elif isinstance(block, Para):
            out += [block.text, ""]
        elif isinstance(block, Bullets):
            out += [f"- {item}" for item in block.items] + [""]
        elif isinstance(block, Table):
            rows = [[_md_cell(str(c)) for c in row] for row in block.rows]
            headers = [_md_cell(h) for h in block.headers]
            out += [tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True), ""]
        elif isinstance(block, Image):
            out += [f"![{block.alt}]({block.path})", ""]
    return "\n".join(out)


# ---------------------------------------------------------------- HTML


def _inline_html(text: str) -> str:
    text = html.escape(text, quote=False)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", text)


def _html_table(table: Table) -> str:
    rendered = tabulate(table.rows, headers=table.headers, tablefmt="html", disable_numparse=True)
    return str(rendered).replace(BOLD_OPEN, "<b>").replace(BOLD_CLOSE, "</b>")


def to_html(blocks: list[Block], title: str) -> str:
    out = [
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:75em;margin:auto}"
        "table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}</style>",
        "</head><body>",
    ]
    for block in blocks:
        if isinstance(block, Heading):
            out.append(f"<h{block.level}>{_inline_html(block.text)}</h{block.level}>")
        elif isinstance(block, Para):
            out.append(f"<p>{_inline_html(block.text)}</p>")
        elif isinstance(block, Bullets):
            out.append(
                "<ul>" + "".join(f"<li>{_inline_html(i)}</li>" for i in block.items) + "</ul>"
            )
        elif isinstance(block, Table):
            out.append(_html_table(block))
        elif isinstance(block, Image):
            out.append(
                f'<p><img src="{html.escape(block.path)}" alt="{html.escape(block.alt)}"></p>'
            )
    out.append("</body></html>")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- LaTeX


def to_latex(table: Table) -> str:
    """A booktabs tabular (tabulate 'latex_booktabs'), bold cells as \\textbf."""
    rendered = tabulate(
        table.rows, headers=table.headers, tablefmt="latex_booktabs", disable_numparse=True
    )
    body = str(rendered).replace(BOLD_OPEN, "\\textbf{").replace(BOLD_CLOSE, "}")
    body = body.replace("±", "$\\pm$").replace("Δ", "$\\Delta$").replace("—", "--")
    body = body.replace("→", "$\\rightarrow$").replace("−", "-")
    lines = [f"% {table.caption or table.name or 'kdbench table'}", body]
    return "\n".join(lines) + "\n"
