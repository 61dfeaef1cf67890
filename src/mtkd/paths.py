"""Where mtkd writes: every output path is a name checked to stay inside the folder the user named.

:func:`inside` is the one check (run names, study names and methods, predict's per-image folders, export
outputs); :func:`output_folder` makes an output folder with one clear line for the ways that fails.
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath

from mtkd.errors import MtkdError

_BAD_CHARS = re.compile(r"[\x00-\x1f\\]")  # control characters; a backslash (a separator on Windows)


def inside(base: str | os.PathLike, name: str | os.PathLike, what: str) -> Path:
    """``base / name``, refused unless ``name`` is a relative path of plain folder names that stays below ``base``.

    ``name`` may have several parts (``method/seed0``), none of them empty, ``.``, ``..`` or hidden (a leading
    ``.``: ``...png``'s stem is ``..``), and no backslash or control character. ``what`` names the thing in the
    message (``"run name"``, ``"study name"``...)."""
    text = os.fspath(name)
    parts = PurePosixPath(text).parts if text else ()
    if not text or text.startswith("/") or os.path.isabs(text):
        reason = "is empty" if not text else "is an absolute path"
    elif _BAD_CHARS.search(text):
        reason = "holds a control character or a backslash"
    elif any(not p or p.startswith(".") for p in text.split("/")):
        reason = "must be folder names, none empty, '.', '..' or starting with '.'"
    else:
        reason = None
    if reason is None:
        path = Path(base, *parts)
        if os.path.commonpath([os.path.abspath(base), os.path.abspath(path)]) != os.path.abspath(base):
            reason = "leads outside it"  # cannot happen with the parts checked above; kept as the last word
    if reason is not None:
        raise MtkdError(f"{what} {text!r} {reason}: mtkd writes only inside {os.fspath(base) or '.'}")
    return path


def output_folder(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Create ``path`` (and its parents) for writing; an existing file there or a folder mtkd cannot create is
    refused with one line."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise MtkdError(f"{what} {path} is an existing file, not a folder: name a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise MtkdError(f"{what} {path}: a part of that path is a file, not a folder") from None
    except PermissionError:
        raise MtkdError(f"{what} {path}: permission denied (choose a folder you can write to)") from None
    except OSError as err:
        raise MtkdError(f"{what} {path}: cannot create it ({err.strerror or type(err).__name__})") from None
    return path
