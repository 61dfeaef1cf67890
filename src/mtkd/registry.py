"""Name → constructor registries, so configs name backbones, weightings and distillers by string (as timm does).

An unknown name is refused with the closest valid names, which is what a user who made a typo needs.
"""

from __future__ import annotations

import difflib
import inspect
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from mtkd.errors import MtkdError, first_line


def suggest(name: str, valid: Iterable[str], what: str) -> MtkdError:
    """An error for an unknown ``name`` that lists the closest valid names (or all of them when none is close)."""
    valid = sorted(valid)
    close = difflib.get_close_matches(name, valid, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(repr(c) for c in close)}?" if close else f"valid: {', '.join(valid)}"
    return MtkdError(f"unknown {what} {name!r}; {hint}")


def construct(what: str, name: str, factory: Callable[..., Any], args: tuple = (), options: Mapping[str, Any] = {},
              context: Mapping[str, Any] = {}) -> Any:
    """``factory(*args, **context, **options)`` where ``options`` come from the user's config: an unknown option
    (with the closest names) or a value the constructor refuses (TypeError / ValueError) is one ``MtkdError``."""
    try:
        return factory(*args, **context, **options)
    except (TypeError, ValueError) as err:
        unknown = re.search(r"unexpected keyword argument '(\w+)'", str(err))
        if unknown and unknown.group(1) in options:
            params = inspect.signature(factory).parameters
            valid = [p for p in list(params)[len(args):] if p not in (*context, "self", "args", "kwargs")]
            if not valid:
                raise MtkdError(f"{what} {name!r} has no options; got {unknown.group(1)!r}") from None
            raise suggest(unknown.group(1), valid, f"{what} {name!r} option") from None
        if not options:
            raise  # nothing of the user's in the call: a bug, keep its traceback
        given = ", ".join(f"{k}={v!r}" for k, v in options.items())
        raise MtkdError(f"{what} {name!r}: bad option value ({first_line(err)}); given: {given}") from None


class Registry:
    """A named set of constructors: ``@REG.register("name")`` adds one, ``REG.get("name")`` returns it."""

    def __init__(self, what: str):
        self.what = what
        self._items: dict[str, Callable[..., Any]] = {}

    def register(self, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def add(obj: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._items:
                raise ValueError(f"{self.what} {name!r} registered twice")
            self._items[name] = obj
            return obj

        return add

    def get(self, name: str) -> Callable[..., Any]:
        if name not in self._items:
            raise suggest(name, self._items, self.what)
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items
