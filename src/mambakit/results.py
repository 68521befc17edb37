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
import sys
from collections.abc import Mapping, Sequence
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
