"""Pages as plain HTML5 with the site's own style and script inline: no network when the site is
built or viewed, from the file system or any static host."""

from __future__ import annotations

import html
import math

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:3px 8px;
text-align:right}th{background:#f3f3f3;cursor:pointer}td:first-child,th:first-child{text-align:left}
td.text{text-align:left}.note{color:#555;max-width:60em}nav a{margin-right:1em}img{max-width:100%}
th[aria-sort=ascending]::after{content:" ▲"}th[aria-sort=descending]::after{content:" ▼"}
"""
# Click a header: sort by that column (numbers by value, '—' last), again to reverse.
SCRIPT = """
document.querySelectorAll('table.sortable').forEach(function(table){
  table.querySelectorAll('th').forEach(function(th, column){
    th.addEventListener('click', function(){
      var descending = th.getAttribute('aria-sort') === 'ascending';
      table.querySelectorAll('th').forEach(function(h){ h.removeAttribute('aria-sort'); });
      th.setAttribute('aria-sort', descending ? 'descending' : 'ascending');
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      function key(row){
        var cell = row.cells[column], v = cell.getAttribute('data-v');
        if (v === null || v === '') return null;
        var n = parseFloat(v); return isNaN(n) ? v : n;
      }
      rows.sort(function(a, b){
        var x = key(a), y = key(b);
        if (x === null) return y === null ? 0 : 1;
        if (y === null) return -1;
        var c = x < y ? -1 : x > y ? 1 : 0;
        return descending ? -c : c;
      });
      rows.forEach(function(row){ body.appendChild(row); });
    });
  });
});
var filter = document.getElementById('filter');
if (filter) {
  filter.addEventListener('change', function(){
    document.querySelectorAll('section[data-filter]').forEach(function(s){
      s.hidden = s.getAttribute('data-filter') !== filter.value;
    });
  });
}
"""


def esc(text) -> str:
    return html.escape(str(text), quote=True)


def cell(text, sort_value=None, css: str = "") -> str:
    """A table cell; `sort_value` (a number, or text) is what a click on its column sorts by."""
    value = (
        ""
        if sort_value is None or (isinstance(sort_value, float) and math.isnan(sort_value))
        else str(sort_value)
    )
    css_attr = f' class="{css}"' if css else ""
    return f'<td data-v="{esc(value)}"{css_attr}>{text}</td>'


def table(headers: list[str], rows: list[list[str]], table_id: str = "") -> str:
    """`rows` of cells made by `cell`; the table sorts on a click of any header."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join(f"<tr>{''.join(row)}</tr>" for row in rows)
    ident = f' id="{esc(table_id)}"' if table_id else ""
    return (
        f'<table class="sortable"{ident}><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table>"
    )


def link(href: str, text: str) -> str:
    return f'<a href="{esc(href)}">{esc(text)}</a>'


def page(title: str, body: str, root: str = "") -> str:
    home = link(root + "index.html", "Leaderboard")
    nav = f"<nav>{home}{link(root + 'leaderboard.json', 'leaderboard.json')}</nav>"
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{esc(title)}'
        f"</title><style>{STYLE}</style></head><body>{nav}<h1>{esc(title)}</h1>{body}"
        f"<script>{SCRIPT}</script></body></html>"
    )
