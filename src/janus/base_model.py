"""The one rule that decides whether a base model reference is a local directory or a hub id.

Training records the base it used and loading finds it again from that record; both go
through :func:`locate_base_model`, so a reference can never mean a directory to one and a
hub id to the other.
"""

from __future__ import annotations

import os
from pathlib import Path


def looks_local(reference: str) -> bool:
    """Whether ``reference`` names a local path even when nothing is there.

    Local: absolute, or starting with ``.`` or ``~``, or with more than one ``/``, or any
    other path separator, or whose parent directory exists here (``bases/x`` when ``bases/``
    exists). A hub id is ``name`` or ``org/name`` and nothing else.
    """
    path = Path(reference).expanduser()
    return (
        reference.startswith(("/", ".", "~"))
        or reference.count("/") > 1
        or (os.sep != "/" and os.sep in reference)
        or (os.altsep is not None and os.altsep != "/" and os.altsep in reference)
        or (len(path.parts) > 1 and path.parent.is_dir())
    )


def locate_base_model(reference: str | os.PathLike[str]) -> Path | str:
    """A local base as an absolute directory, or a hub id as given.

    An existing path must be a directory with a ``config.json``; a missing path that looks
    local (:func:`looks_local`) is an error naming it, never a hub lookup.
    """
    text = os.fspath(reference)
    if not text.strip():
        raise ValueError("base model: empty reference (give a local directory or a hub id)")
    path = Path(text).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"base model {text}: no config.json in it")
        return path.resolve()
    if looks_local(text):
        raise FileNotFoundError(
            f"base model {text}: no such local directory (a hub id is 'name' or 'org/name')"
        )
    return text
