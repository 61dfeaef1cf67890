"""Atomic writes: the one way mtkd writes a file it may be killed in the middle of.

The content goes to a hidden temporary file in the destination's own folder (``.<name>.<random>.tmp``, the same
file system, so the rename is atomic), is flushed and fsynced, then ``os.replace``d over the destination. A reader
sees the old file or the new one, never a torn one; a failed or interrupted write (disk full, Ctrl-C, an exception
in ``write``) removes its temporary file, so no ``.tmp`` litter is left behind.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` for a writer that wants a file name (ONNX, ``savefig``); on a clean exit
    it is fsynced and replaces ``path``, on any exception it is removed."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # the umask applies, as for open()
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:  # KeyboardInterrupt too: never leave the temporary file behind
        tmp.unlink(missing_ok=True)
        named = failed_write(err, path)
        if named is not None:
            raise named from err
        raise


def failed_write(err: BaseException, path: Path) -> OSError | None:
    """The ``OSError`` that names ``path`` for a failed write of it, or None to let ``err`` through unchanged.

    Writers report a full disk without the file name (``write()``), without an errno (numpy's short write) or as a
    ``RuntimeError`` (torch's zip writer): with little space left it becomes ENOSPC naming ``path``."""
    if isinstance(err, OSError) and err.errno is not None and err.filename is not None:
        return None
    if not isinstance(err, (OSError, RuntimeError)):
        return None
    if shutil.disk_usage(path.parent).free < 64 * 2**20:
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    if isinstance(err, OSError):
        return OSError(err.errno, err.strerror or str(err), str(path))
    return None


def write_atomic(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> None:
    """``write(file)`` into a temporary file beside ``path``, then replace ``path`` with it."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        write(f)
        f.flush()


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """``data`` into ``path``, atomically."""
    write_atomic(path, lambda f: f.write(data))


def write_text(path: str | os.PathLike, text: str) -> None:
    """``text`` (UTF-8) into ``path``, atomically."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, payload: Any) -> None:
    """``payload`` as indented, key-sorted JSON into ``path``, atomically."""
    write_text(path, json.dumps(payload, indent=2, sort_keys=True))
