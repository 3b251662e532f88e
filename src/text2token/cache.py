"""One mechanism for computed arrays kept on disk: safetensors files whose metadata carry a
fingerprint of what they were computed from (tokenizer, corpus, weights, settings). A file is used
only for exactly the fingerprint it was written with; it is written atomically."""

from __future__ import annotations

import json
import os

import numpy as np

from .errors import Text2TokenError
from .textio import atomic_path


class CacheMismatch(Text2TokenError):
    """A cached file exists but was computed for another fingerprint."""

    def __init__(self, path, what: str, stored: dict, expected: dict):
        self.differing = sorted(k for k in set(stored) | set(expected) if stored.get(k) != expected.get(k))
        shown = ", ".join(f"{k}={stored.get(k)!r}" for k in self.differing)
        super().__init__(
            f"{path}: cached {what} were built for different settings ({', '.join(self.differing)}: "
            f"stored {shown}); delete the file to rebuild them (or use a new run folder)"
        )


def save_cached(path: str | os.PathLike, arrays: dict[str, np.ndarray], fingerprint: dict) -> None:
    """Write ``arrays`` with ``fingerprint`` in the metadata, atomically (temp file, then rename)."""
    from safetensors.numpy import save_file

    arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    with atomic_path(path, suffix=".safetensors") as tmp:
        save_file(arrays, str(tmp), metadata={"fingerprint": json.dumps(fingerprint, sort_keys=True)})


def read_fingerprint(path: str | os.PathLike) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as fh:
        return json.loads((fh.metadata() or {}).get("fingerprint", "{}"))


def load_cached(
    path: str | os.PathLike, fingerprint: dict | None = None, what: str = "arrays"
) -> dict[str, np.ndarray]:
    """The arrays of ``path``; with ``fingerprint``, raise :class:`CacheMismatch` unless it is the stored one."""
    from safetensors.numpy import load_file

    if fingerprint is not None:
        stored = read_fingerprint(path)
        if stored != fingerprint:
            raise CacheMismatch(path, what, stored, fingerprint)
    return load_file(str(path))
