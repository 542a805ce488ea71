"""Write a whole directory or nothing: every artefact Janus saves goes through here.

``write(tmp)`` fills a fresh temporary directory beside the target; only when it returns are
the files synced and the directory swapped in (old aside, new in, old removed). A crash while
writing leaves the target exactly as it was, and never a half-written model, adapter or run.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path


def fsync_tree(directory: Path) -> None:
    """Flush every file below ``directory`` to disk before it is renamed into place."""
    for file in directory.rglob("*"):
        if file.is_file():
            with open(file, "rb") as handle:
                os.fsync(handle.fileno())


def atomic_directory(
    target: Path,
    write: Callable[[Path], None],
    *,
    replaceable: Callable[[Path], bool] = lambda path: not any(path.iterdir()),
    what: str = "directory",
) -> Path:
    """Create or replace ``target`` with what ``write`` puts in a temporary directory.

    An existing ``target`` is replaced only if ``replaceable(target)`` says it is one of ours
    (by default: only if it is empty), so a wrong ``--out`` never wipes unrelated files.
    """
    target = Path(target).expanduser()
    if target.exists() and not (target.is_dir() and replaceable(target)):
        raise FileExistsError(f"refusing to replace {target}: it is not a Janus {what}")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the result is a normal folder
    try:
        write(tmp)
        fsync_tree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    backup = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
    had_old = target.exists()
    if had_old:
        os.replace(target, backup)
    os.replace(tmp, target)
    if had_old:
        shutil.rmtree(backup, ignore_errors=True)
    return target
