"""Retrieval with a text2token model: building an index folder from a corpus of any size (:mod:`.build`, streaming
and resumable), searching it — dense, sparse (the LM-head tokens each text predicts) or hybrid, exact or through an
ANN graph (:mod:`.search`, :mod:`.ann`) — and exporting it to a vector store (:mod:`.qdrant`). What an index keeps
of each text is :mod:`.top_tokens`."""

from .build import build_index
from .search import ANN_CANDIDATES, DEFAULT_ALPHA, DEFAULT_FUSION, MODES, SearchIndex, fuse
from .top_tokens import DEFAULT_QUERY_TOP_K, DEFAULT_TOP_K, INDEX_FILE, TopTokens, sparse_vectors, weights

__all__ = [
    "ANN_CANDIDATES",
    "DEFAULT_ALPHA",
    "DEFAULT_FUSION",
    "DEFAULT_QUERY_TOP_K",
    "DEFAULT_TOP_K",
    "INDEX_FILE",
    "MODES",
    "SearchIndex",
    "TopTokens",
    "build_index",
    "fuse",
    "sparse_vectors",
    "weights",
]
