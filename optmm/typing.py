"""Shape- and dtype-carrying aliases shared across optmm."""

from __future__ import annotations

from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

FloatArray: TypeAlias = npt.NDArray[np.float64]
"""float64 array; its shape is stated where it is used (e.g. ``(n_positions,)``)."""
BoolArray: TypeAlias = npt.NDArray[np.bool_]
ArrayLike: TypeAlias = npt.ArrayLike | Any
"""Anything numpy can turn into an array: scalars, sequences, arrays."""

__all__ = ["ArrayLike", "BoolArray", "FloatArray"]
