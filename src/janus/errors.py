"""The errors of the data side: a bad dataset line, and an output that could not be written."""

from __future__ import annotations

import os

__all__ = ["DataValidationError", "Invalid", "OutputError"]


class DataValidationError(ValueError):
    """A record or trajectory breaks the schema. The message is one line:
    ``FILE:LINE: field 'NAME': what is wrong``. Attributes keep the parts."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        line: int | None,
        field: str | None,
        message: str,
        reason: str = "bad_value",
        trajectory_id: str | None = None,
    ) -> None:
        self.path = str(path)
        self.line = line
        self.field = field
        self.reason = reason
        self.trajectory_id = trajectory_id
        self.detail = message
        where = self.path if line is None else f"{self.path}:{line}"
        text = f"{where}: field {field!r}: {message}" if field else f"{where}: {message}"
        super().__init__(text)


class OutputError(OSError):
    """An output could not be written (disk full, I/O error); nothing was left at its path."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.errno = code


class Invalid(Exception):
    """One failed check of one line (field, message, reason), before it has a file and line."""

    def __init__(
        self, field: str | None, message: str, reason: str, trajectory_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        self.reason = reason
        self.trajectory_id = trajectory_id
