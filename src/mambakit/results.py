"""What every result shares: one way to write a table of numbers as Markdown.

Every command's Markdown output (bench tables, evaluation tables, the claims table of
``docs/RESULTS.md``) goes through :func:`markdown_table`, so a column is declared once as
``(key, header)`` and cells are formatted the same way everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def _format_cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 100:
            return f"{value:.0f}"
        if abs(value) >= 1:
            return f"{value:.2f}"
        return f"{value:.3g}"
    return str(value)


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    """A Markdown table of ``rows``; ``columns`` are ``(key, header)`` pairs, ``None`` -> ``-``."""
    header = "| " + " | ".join(h for _, h in columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(_format_cell(r.get(k)) for k, _ in columns) + " |" for r in rows]
    return "\n".join([header, rule, *body])
