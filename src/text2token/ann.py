"""Approximate nearest-neighbour search over dense embeddings, for corpora where an exact matrix product per query
is too slow: an HNSW graph from usearch (Unum), saved next to the index and memory-mapped when loaded.

Why usearch rather than FAISS: the same HNSW algorithm in a ~2 MB wheel with no BLAS/OpenMP stack to clash with
torch's, incremental ``add`` (an index can grow as a corpus streams in), and ``view=True`` serving straight from a
memory-mapped file (queries do not load the graph into memory). Vectors are stored in half precision (half the
bytes of float32; scores are cosines of L2-normalised vectors, where f16 loses nothing that changes a top-10).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

ANN_FILE = "dense.usearch"
# Below this many documents an exact product is fast (3,000 docs × 576 dims: well under a millisecond per query)
# and exact; ``index --ann auto`` builds the graph only above it.
ANN_AUTO_MIN_DOCUMENTS = 20_000
CONNECTIVITY = 32  # graph degree: higher = better recall, bigger index
EXPANSION_ADD = 128
EXPANSION_SEARCH = 128  # candidates visited per query: recall vs latency


def _index(ndim: int):
    from usearch.index import Index

    return Index(ndim=ndim, metric="ip", dtype="f16", connectivity=CONNECTIVITY, expansion_add=EXPANSION_ADD,
                 expansion_search=EXPANSION_SEARCH)


def build_ann(blocks, path: str | os.PathLike, ndim: int):
    """An HNSW graph of L2-normalised vectors, given as ``(first row, rows)`` blocks (row numbers are the keys),
    saved at ``path``. The graph is built in memory (about ``ndim``·2 + ``CONNECTIVITY``·8 bytes per vector)."""
    index = _index(ndim)
    for first, rows in blocks:
        index.add(np.arange(first, first + len(rows), dtype=np.uint64), np.ascontiguousarray(rows, dtype=np.float32))
    index.save(str(path))


class DenseANN:
    """A saved graph, memory-mapped: ``search(queries, count)`` → (document rows, cosine scores), best first."""

    def __init__(self, path: str | os.PathLike, ndim: int):
        self.path = Path(path)
        self.index = _index(ndim)
        self.index.view(str(self.path))  # memory-mapped: not read into memory
        self.index.expansion_search = EXPANSION_SEARCH

    def __len__(self) -> int:
        return len(self.index)

    def search(self, queries: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
        """``queries`` (Q×H, L2-normalised): rows (Q×count, int64, -1 where fewer exist) and cosines (Q×count)."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        count = min(count, len(self.index))
        found = self.index.search(queries, count)
        keys = np.full((len(queries), count), -1, dtype=np.int64)
        scores = np.full((len(queries), count), -np.inf, dtype=np.float32)
        k = np.asarray(found.keys, dtype=np.int64).reshape(len(queries), -1)
        keys[:, : k.shape[1]] = k
        scores[:, : k.shape[1]] = 1.0 - np.asarray(found.distances, dtype=np.float32).reshape(len(queries), -1)
        counts = np.asarray(getattr(found, "counts", [keys.shape[1]])).reshape(-1)  # one query: a plain Matches
        for q, n in enumerate(counts):  # fewer than ``count`` found: mark the rest
            keys[q, n:] = -1
            scores[q, n:] = -np.inf
        return keys, scores
