"""Pieces shared by the ``optmm`` sub-commands."""

from __future__ import annotations


class UsageError(Exception):
    """A user-facing error: reported as one ``optmm: error: ...`` line, exit code 2."""
