"""What every result shares: the ``meta`` envelope and one way to write a table.

Every result JSON a command saves carries ``meta`` (:class:`Meta`: the machine, the command
line, the git commit and the UTC date), written by :meth:`Meta.collect` and read back by
:meth:`Meta.read`, so ``mambakit report`` can say what each number was measured on. Every
command's Markdown output (bench tables, evaluation tables, the claims table of
``docs/RESULTS.md``) goes through :func:`markdown_table`, so a column is declared once as
``(key, header)`` and cells are formatted the same way everywhere.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Meta:
    """Where and how a result was measured (saved as the result's ``meta``)."""

    machine: Mapping[str, Any]  # platform, cpu, cpu_cores, torch, device, gpu (on CUDA), ...
    command: str
    git_commit: str | None
    date_utc: str

    @classmethod
    def collect(cls, command: str | None = None, device: Any = None) -> Meta:
        """This machine, ``command`` (default: this process' command line), the checkout's
        commit and the current UTC time."""
        from mambakit.bench.common import git_commit, machine_info

        return cls(
            machine=machine_info(device),
            command=command if command is not None else " ".join(sys.argv),
            git_commit=git_commit(),
            date_utc=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        )

    @classmethod
    def read(cls, payload: Mapping[str, Any]) -> Meta | None:
        """The ``meta`` of a loaded result, or ``None`` when it has none (unknown keys are
        ignored, missing ones read as unknown)."""
        raw = payload.get("meta")
        if not isinstance(raw, Mapping):
            return None
        return cls(
            machine=dict(raw.get("machine") or {}),
            command=str(raw.get("command", "?")),
            git_commit=raw.get("git_commit"),
            date_utc=str(raw.get("date_utc", "date unknown")),
        )

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def label(self) -> str:
        """One line naming the machine, command, commit and date."""
        m = self.machine
        commit = (self.git_commit or "unknown")[:10]
        return (
            f"_Measured on {m.get('platform', 'unknown platform')}, "
            f"{m.get('cpu_cores', '?')} CPUs ({m.get('cpu', 'unknown CPU')}), "
            f"torch {m.get('torch', '?')}, {m.get('gpu') or 'CPU only'}; command "
            f"`{self.command}`; commit `{commit}`; {self.date_utc}._"
        )


#: How a column formats its cells: a ``str.format`` template (``"{:.3f}"``) or a callable.
CellFormat = str | Callable[[Any], str]


def format_cell(value: Any, fmt: CellFormat | None = None) -> str:
    """One table cell: ``-`` for a missing value, ``n/a`` for NaN, else ``value`` by ``fmt``
    (a template or a callable) or, without one, by a general rule: floats to 3 significant
    digits below 1, 2 decimals below 100, none above; anything else as ``str``."""
    if value is None:
        return "-"
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    if fmt is not None:
        return fmt(value) if callable(fmt) else fmt.format(value)
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 100:
            return f"{value:.0f}"
        if abs(value) >= 1:
            return f"{value:.2f}"
        return f"{value:.3g}"
    return str(value)


def lookup(record: Mapping[str, Any], path: str) -> Any:
    """``record["a"]["b"]`` for ``path = "a.b"``; ``None`` where any key is missing."""
    value: Any = record
    for key in path.split("."):
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return value


def markdown_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[tuple[str, str] | tuple[str, str, CellFormat]],
    align: str = "",
) -> str:
    """A Markdown table of ``rows``, one line per row.

    ``columns``: ``(key, header)`` or ``(key, header, fmt)``; a cell is
    ``format_cell(row.get(key), fmt)``. ``align``: a letter per column, ``"l"`` (the
    default for columns it does not reach) or ``"r"`` (right-aligned: ``---:``), e.g.
    ``"l" + "r" * 5`` for a name followed by numbers.
    """
    header = "| " + " | ".join(c[1] for c in columns) + " |"
    rule = "|" + "".join(
        "---:|" if align[i : i + 1] == "r" else "---|" for i in range(len(columns))
    )
    body = [
        "| " + " | ".join(format_cell(r.get(c[0]), *c[2:]) for c in columns) + " |" for r in rows
    ]
    return "\n".join([header, rule, *body])


def metrics_table(
    columns: Sequence[tuple[str, Mapping[str, Any]]],
    metrics: Sequence[tuple[str, str, CellFormat]],
    corner: str = "metric",
    align: str = "",
) -> str:
    """The transposed table: one column per ``(name, record)``, one row per
    ``(label, path, fmt)`` metric, each cell the record's value at ``path`` (see
    :func:`lookup`) formatted by ``fmt``; ``corner`` heads the label column."""
    keys = [f"c{i}" for i in range(len(columns))]
    rows = [
        {corner: label}
        | {k: format_cell(lookup(record, path), fmt) for k, (_, record) in zip(keys, columns)}
        for label, path, fmt in metrics
    ]
    return markdown_table(rows, [(corner, corner), *zip(keys, (n for n, _ in columns))], align)
