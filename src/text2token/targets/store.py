"""Sparse target storage: per text a list of token ids and weights (CSR layout), never a
dense V-vector. Saved through :mod:`text2token.cache` (atomic safetensors with a fingerprint)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import torch

from ..cache import load_cached, read_fingerprint, save_cached


@dataclass
class SparseTargets:
    """Targets for N texts: ``ids[indptr[i]:indptr[i+1]]`` with ``weights`` likewise.

    ``text_index[i]`` is the position of target ``i``'s text in the source corpus (texts
    without any target are skipped, so this is not always ``i``).
    """

    indptr: np.ndarray  # int64, N+1
    ids: np.ndarray  # int32
    weights: np.ndarray  # float32
    text_index: np.ndarray  # int64, N
    fingerprint: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.indptr) - 1

    def get(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        a, b = self.indptr[i], self.indptr[i + 1]
        return self.ids[a:b], self.weights[a:b]

    @property
    def nbytes(self) -> int:
        return self.indptr.nbytes + self.ids.nbytes + self.weights.nbytes + self.text_index.nbytes

    def batch(self, rows: list[int] | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded (B×K) id and weight tensors for ``rows``; padding has weight 0."""
        parts = [self.get(int(r)) for r in rows]
        k = max(len(p[0]) for p in parts)
        ids = torch.zeros(len(parts), k, dtype=torch.long)
        weights = torch.zeros(len(parts), k, dtype=torch.float32)
        for j, (pi, pw) in enumerate(parts):
            ids[j, : len(pi)] = torch.from_numpy(pi.astype(np.int64))
            weights[j, : len(pw)] = torch.from_numpy(pw)
        return ids, weights

    @classmethod
    def from_lists(cls, id_lists, weight_lists, text_index, fingerprint=None) -> SparseTargets:
        lengths = np.fromiter((len(x) for x in id_lists), dtype=np.int64, count=len(id_lists))
        indptr = np.zeros(len(id_lists) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        ids = np.concatenate([np.asarray(x, dtype=np.int32) for x in id_lists]) if id_lists else np.zeros(0, np.int32)
        weights = (
            np.concatenate([np.asarray(w, dtype=np.float32) for w in weight_lists])
            if weight_lists
            else np.zeros(0, np.float32)
        )
        return cls(indptr, ids, weights, np.asarray(text_index, dtype=np.int64), dict(fingerprint or {}))

    def save(self, path: str | os.PathLike) -> None:
        arrays = {"indptr": self.indptr, "ids": self.ids, "weights": self.weights, "text_index": self.text_index}
        save_cached(path, arrays, self.fingerprint)

    @classmethod
    def load(cls, path: str | os.PathLike, expect_fingerprint: dict | None = None) -> SparseTargets:
        """Load ``path``; with ``expect_fingerprint``, a file built for other settings raises
        :class:`~text2token.cache.CacheMismatch` naming the differing fields."""
        arrays = load_cached(path, expect_fingerprint, what="targets")
        fingerprint = expect_fingerprint if expect_fingerprint is not None else read_fingerprint(path)
        return cls(arrays["indptr"], arrays["ids"], arrays["weights"], arrays["text_index"], dict(fingerprint))
