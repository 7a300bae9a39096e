"""Read the tables of a report back as text, for exact assertions (stdlib html.parser)."""

from __future__ import annotations

from html.parser import HTMLParser


class _Tables(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: list[dict] = []
        self._stack: list[dict] = []
        self._cell: list[str] | None = None
        self._classes: str = ""
        self._heading: list[str] | None = None
        self.last_heading = ""

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("h2", "h3", "h4"):
            self._heading = []
        elif tag == "table":
            self._stack.append({"heading": self.last_heading, "rows": [], "classes": []})
        elif tag == "tr" and self._stack:
            self._stack[-1]["rows"].append([])
            self._stack[-1]["classes"].append([])
        elif tag in ("td", "th") and self._stack:
            self._cell = []
            self._classes = attrs.get("class") or ""

    def handle_endtag(self, tag):
        if tag in ("h2", "h3", "h4") and self._heading is not None:
            self.last_heading = " ".join("".join(self._heading).split())
            self._heading = None
        elif tag in ("td", "th") and self._cell is not None and self._stack:
            self._stack[-1]["rows"][-1].append(" ".join("".join(self._cell).split()))
            self._stack[-1]["classes"][-1].append(self._classes)
            self._cell = None
        elif tag == "table" and self._stack:
            self.tables.append(self._stack.pop())

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._heading is not None:
            self._heading.append(data)


def tables(html: str) -> list[dict]:
    """Every ``<table>``: ``heading`` (the last h2/h3 before it), ``rows`` (cell texts, whitespace
    collapsed) and ``classes`` (each cell's class attribute), in document order."""
    parser = _Tables()
    parser.feed(html)
    return parser.tables
