"""One problem found in a data file, located by file, line and field so the user can go straight to it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Finding:
    """``error`` makes a file unusable (``data check`` exits 1, ``--fix`` drops the record);
    ``warning`` is worth a look but training can go on. ``field`` is a JSON pointer into the record
    (``/output/category``) or ``""`` for the whole line; ``line`` is 0 for file-wide findings."""

    severity: Severity
    code: str
    line: int
    field: str
    message: str
    file: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.field + ': ' if self.field else ''}{self.message}"
