"""Markdown tables for metadata, reports and the CLI."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

MAX_CELL = 80


def _cell(value: Any) -> str:
    if value is None:
        text = "–"
    elif isinstance(value, float):
        text = f"{value:.4f}"
    elif isinstance(value, (list, tuple)):
        text = ", ".join(map(str, value))
    else:
        text = str(value)
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A Markdown table of `rows` (columns default to the keys of all rows, in first-seen order)."""
    if not rows:
        return "_(empty)_"
    columns = list(columns or dict.fromkeys(key for row in rows for key in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def sample_markdown(records: Sequence[Any]) -> str:
    """A sample of records as a table (dicts) or a bullet list (anything else)."""
    if records and all(isinstance(r, Mapping) for r in records):
        return markdown_table(records)
    return "\n".join(f"- {_cell(r)}" for r in records) or "_(empty)_"
