"""Folder locks: one process at a time in a run folder or a study folder.

The lock is a file, ``<folder>/.mtkd.lock``, created with ``O_CREAT | O_EXCL`` (atomic, also on NFS v3+) holding
the holder's pid, host, start time and command. A second process is refused with one line naming the holder. A
lock left by a process that is gone (same host, pid no longer alive) is taken over with a one-line message; a lock
from another host is never taken over (mtkd cannot tell whether that process lives): the message says which file
to delete once that run is known to be dead.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from mtkd.errors import MtkdError

LOCK = ".mtkd.lock"
_HELD: set[Path] = set()  # locks this process holds (a second acquire of the same folder in-process is refused too)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True


def _holder(path: Path) -> dict[str, Any] | None:
    """The lock file's content; None when it is unreadable or torn (a holder killed while writing it)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("pid"), int) else None


def _describe(h: dict[str, Any]) -> str:
    started = time.strftime("%Y-%m-%d %H:%M", time.localtime(h.get("started", 0)))
    return f"pid {h['pid']} on {h.get('host', '?')} since {started}"


class FolderLock:
    """``with FolderLock(folder, "run"):`` holds ``folder/.mtkd.lock`` for the block; ``what`` names the folder's
    kind in the messages."""

    def __init__(self, folder: str | os.PathLike, what: str = "folder") -> None:
        self.folder, self.what = Path(folder), what
        self.path = self.folder / LOCK
        self.mine: dict[str, Any] = {}

    def acquire(self) -> None:
        key = self.path.resolve()
        if key in _HELD:
            raise MtkdError(f"{self.what} {self.folder} is already in use by this process")
        self.mine = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                     "command": " ".join(sys.argv)[:500]}
        for _ in range(3):  # a stale lock removed, then retried; a race lost to another taker is retried too
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                self._take_over_if_stale()
                continue
            except OSError as err:
                raise MtkdError(f"cannot lock {self.what} {self.folder}: {err.strerror or type(err).__name__}") \
                    from None
            with os.fdopen(fd, "w") as f:
                json.dump(self.mine, f)
            _HELD.add(key)
            return
        raise MtkdError(f"cannot lock {self.what} {self.folder}: its lock file {self.path} keeps coming back")

    def _take_over_if_stale(self) -> None:
        holder = _holder(self.path)
        if holder is None:
            try:
                age = time.time() - self.path.stat().st_mtime
            except FileNotFoundError:
                return  # released meanwhile: retry
            if age < 10:  # being written right now
                raise MtkdError(f"{self.what} {self.folder} is being locked by another process ({self.path})")
            message = f"mtkd: taking over the unreadable lock {self.path} ({age:.0f} s old)"
        elif holder.get("host") != socket.gethostname() or _alive(holder["pid"]):
            raise MtkdError(f"{self.what} {self.folder} is in use by {_describe(holder)} "
                            f"(command: {holder.get('command', '?')}); wait for it to finish, or delete "
                            f"{self.path} if that process is gone")
        else:
            message = f"mtkd: taking over the lock of {self.what} {self.folder} from {_describe(holder)}, which is gone"
        # Move the stale file aside (atomic: of two takers, one wins); if what moved is not the stale lock (another
        # taker already replaced it with a live one), put it back.
        aside = self.path.with_name(f"{LOCK}.stale-{os.getpid()}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        if _holder(aside) != holder:
            try:
                os.link(aside, self.path)
            except FileExistsError:
                pass
            aside.unlink(missing_ok=True)
            raise MtkdError(f"{self.what} {self.folder} was just locked by another process ({self.path})")
        aside.unlink(missing_ok=True)
        print(message, file=sys.stderr)

    def release(self) -> None:
        _HELD.discard(self.path.resolve())
        if _holder(self.path) == self.mine:  # never remove a lock another process has taken over
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> FolderLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()
