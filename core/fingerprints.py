"""Fingerprints of customer rows: which rows a model was trained on, kept with the model.

A row's fingerprint is a 64-bit hash of its 19 feature values in their canonical form (after
:func:`core.schema.check_frame`), so the same customer spelled the BigML way (``Area code`` 415,
``Yes``/``No``) or the modeldata way, read from a CSV or sent as JSON, has the same fingerprint.
Every trained model keeps the sorted set of its training rows' fingerprints (``fingerprints.npy``,
a plain ``uint64`` NumPy array, never a pickle) with its bundle and as an artifact of its MLflow
run; the promotion gate and the scoring of labelled files use it to leave out rows a model has
already seen.

The hash (format :data:`FORMAT`): BLAKE2b with an 8-byte digest (RFC 7693, ``hashlib``) of the
row's values in schema order — each number as an IEEE-754 ``float64`` in little-endian byte order
(``-0.0`` written as ``0.0``, so integers and floats of the same value agree), each category as its
canonical spelling in ASCII (every allowed value is), zero-padded to 16 bytes — read as a
big-endian unsigned integer. Two different rows share a fingerprint with probability about 2**-64
per pair: for 4,000 training rows and a 10,000-row file, about 2e-12 of one false "already seen".
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pandas as pd

from core.schema import FEATURES

FORMAT = "churnops.rows/blake2b-64/v1"
FILE = "fingerprints.npy"
_CATEGORY_BYTES = 16
_EMPTY = np.empty(0, dtype=np.uint64)
if not all(len(v) <= _CATEGORY_BYTES and v.isascii() for s in FEATURES for v in s.allowed):
    raise ImportError(f"{FORMAT} needs ASCII category values of at most {_CATEGORY_BYTES} bytes")


def _row_bytes(frame: pd.DataFrame) -> np.ndarray:
    """The canonical bytes of each row, as an ``(n, width)`` ``uint8`` matrix."""
    missing = [spec.name for spec in FEATURES if spec.name not in frame.columns]
    if missing:
        raise ValueError(f"cannot fingerprint rows without {', '.join(missing)}")
    parts = []
    for spec in FEATURES:
        column = frame[spec.name]
        if spec.is_numeric:
            values = column.to_numpy(dtype="<f8") + 0.0  # -0.0 + 0.0 == +0.0
            if not np.isfinite(values).all():
                raise ValueError(f"{spec.name}: cannot fingerprint a missing or infinite value")
            parts.append(values.astype("<f8").view(np.uint8).reshape(len(frame), 8))
        else:
            text = column.astype(str).to_numpy(dtype=f"S{_CATEGORY_BYTES}")
            parts.append(text.view(np.uint8).reshape(len(frame), _CATEGORY_BYTES))
    return np.ascontiguousarray(np.hstack(parts)) if parts else np.empty((0, 0), np.uint8)


def row_fingerprints(frame: pd.DataFrame) -> np.ndarray:
    """The fingerprint of every row of a validated table, in row order.

    Args:
        frame: a table already through :func:`core.schema.check_frame` (canonical column names
            and spellings; other columns, such as ``churn``, are ignored).

    Returns:
        ``uint64`` array of shape ``(len(frame),)``.

    Raises:
        ValueError: when a feature column is missing or holds a missing/infinite number.
    """
    if frame.empty:
        return _EMPTY.copy()
    rows = _row_bytes(frame)
    digests = b"".join(hashlib.blake2b(row, digest_size=8).digest() for row in rows)
    return np.frombuffer(digests, dtype=">u8").astype(np.uint64)


def fingerprint_set(frame: pd.DataFrame) -> np.ndarray:
    """The sorted, distinct fingerprints of a validated table's rows (what a model keeps)."""
    return np.unique(row_fingerprints(frame))


def seen_mask(frame: pd.DataFrame, seen: np.ndarray) -> np.ndarray:
    """Which rows of a validated table are in ``seen`` (a model's :func:`fingerprint_set`).

    Returns:
        Boolean array of shape ``(len(frame),)``; all false when ``seen`` is empty.
    """
    if len(seen) == 0 or frame.empty:
        return np.zeros(len(frame), dtype=bool)
    return np.isin(row_fingerprints(frame), seen, assume_unique=False)


def dumps(seen: np.ndarray) -> bytes:
    """``seen`` as the bytes of a ``.npy`` file (sorted distinct ``uint64``, no pickle)."""
    buffer = io.BytesIO()
    np.save(buffer, np.unique(np.asarray(seen, dtype=np.uint64)), allow_pickle=False)
    return buffer.getvalue()


def save(seen: np.ndarray, path: Path) -> Path:
    """Write ``seen`` to ``path`` as a ``.npy`` file; returns ``path``."""
    path.write_bytes(dumps(seen))
    return path


def load(path: Path) -> np.ndarray:
    """Read a fingerprints file written by :func:`save` (pickles are refused).

    Raises:
        ValueError: when the file is not a one-dimensional ``uint64`` array.
    """
    seen = np.load(path, allow_pickle=False)
    if seen.dtype != np.uint64 or seen.ndim != 1:
        raise ValueError(f"{path}: not a fingerprints file ({seen.dtype}, {seen.ndim} dimensions)")
    return np.unique(seen)
