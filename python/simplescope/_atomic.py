"""Writing a file so that readers see the old contents or the new, never a part."""
from __future__ import annotations

import os
import secrets


def atomic_write(path: str, writer, binary: bool) -> None:
    """Write through ``writer(fileobj)`` into a temp file beside ``path``, fsync, then os.replace.
    On any failure the temp file is removed and ``path`` is left as it was."""
    tmp, fd = _create_temp_beside(path)
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as f:
            writer(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _create_temp_beside(path: str) -> tuple[str, int]:
    """A new hidden file in ``path``'s folder, opened for writing: (its path, its descriptor).
    Like tempfile.mkstemp, but with mode 0666 & ~umask as an ordinary file gets."""
    folder, name = os.path.split(os.path.abspath(path))
    while True:
        tmp = os.path.join(folder, f".{name}.{secrets.token_hex(6)}.tmp")
        try:
            return tmp, os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        except FileExistsError:
            continue
