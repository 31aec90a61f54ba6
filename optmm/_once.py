"""Patches made once per process: the compile fixes' installers (:mod:`optmm._compile_speed`,
:mod:`optmm._compile_link`, :mod:`optmm._compile_wrap`)."""

from __future__ import annotations

import functools
from collections.abc import Callable

__all__ = ["Installer", "once"]


class Installer:
    """A function that patches something and says whether it did, run on its first call alone: later
    calls return that first answer (False while it runs, to a patch that asks again meanwhile)."""

    def __init__(self, patch: Callable[[], bool]) -> None:
        self._patch = patch
        self._done: bool | None = None
        functools.update_wrapper(self, patch)

    def __call__(self) -> bool:
        if self._done is None:
            self._done = False
            self._done = bool(self._patch())
        return self._done

    def installed(self) -> bool:
        """Whether the first call patched."""
        return bool(self._done)


def once(patch: Callable[[], bool]) -> Installer:
    """Decorator: ``patch`` as an :class:`Installer`."""
    return Installer(patch)
