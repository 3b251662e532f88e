"""Export an index into Qdrant, a vector database that keeps dense and sparse vectors of a point together: one
collection, each document a point with a named dense vector (``dense``, cosine), a named sparse vector (``sparse``,
its LM-head tokens and weights) and its id and text as payload. Qdrant's local mode (a folder, no server) or a
server (``url``). Query it with the store's own API and the query vectors of :meth:`SearchIndex.query_vectors`:

    client.query_points(collection, query=dense_q.tolist(), using="dense", limit=10)
    client.query_points(collection, query=models.SparseVector(indices=..., values=...), using="sparse", limit=10)
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import Text2TokenError

DENSE, SPARSE = "dense", "sparse"


def qdrant_client(path: str | os.PathLike | None = None, url: str | None = None):
    try:
        from qdrant_client import QdrantClient
    except ImportError:
        raise Text2TokenError(
            "exporting to Qdrant needs the qdrant-client package: pip install 'text2token[qdrant]'"
        ) from None
    if (path is None) == (url is None):
        raise Text2TokenError("give a Qdrant folder (local mode) or a server url, exactly one")
    if path is not None:
        try:
            return QdrantClient(path=str(path))
        except RuntimeError as exc:  # qdrant's local mode locks its folder for one client at a time
            if "already accessed" in str(exc):
                raise Text2TokenError(
                    f"the Qdrant folder {path} is in use by another Qdrant client (local mode allows "
                    "one at a time): close it, or export to a Qdrant server with --qdrant-url"
                ) from None
            raise
    client = QdrantClient(url=url, timeout=10)
    try:
        client.get_collections()  # one request now: an unreachable server is one line, not a traceback mid-export
    except Exception as exc:  # noqa: BLE001 — qdrant-client wraps httpx/grpc errors in its own classes
        client.close()
        cause = exc.__cause__ or exc.__context__ or exc
        raise Text2TokenError(
            f"cannot reach a Qdrant server at {url} ({type(cause).__name__}: "
            f"{str(cause).splitlines()[0] if str(cause) else 'no answer'})"
        ) from None
    return client


def export_qdrant(index, client, collection: str, batch_size: int = 256, show_progress_bar: bool = False) -> dict:
    """Write every document of ``index`` (a :class:`~text2token.retrieval.search.SearchIndex`) as a point of a new
    ``collection`` (replaced if it exists). Point ids are the documents' row numbers; the payload holds ``id`` and
    ``text``. Returns a summary."""
    from qdrant_client import models

    from ..progress import progress_bar

    n, dim = index.dense.shape
    if client.collection_exists(collection):
        client.delete_collection(collection)
    client.create_collection(
        collection,
        vectors_config={DENSE: models.VectorParams(size=dim, distance=models.Distance.COSINE)},
        sparse_vectors_config={SPARSE: models.SparseVectorParams()},
    )
    sparse = index.sparse
    bar = progress_bar(total=n, desc="export to qdrant", disable=not show_progress_bar)
    for start in range(0, n, batch_size):
        rows = range(start, min(start + batch_size, n))
        dense = np.asarray(index.dense[start : rows.stop], dtype=np.float32)
        points = []
        for k, i in enumerate(rows):
            lo, hi = sparse.indptr[i], sparse.indptr[i + 1]
            points.append(
                models.PointStruct(
                    id=i,
                    payload={k: index.docs[i][k] for k in ("id", "passage", "start", "text") if k in index.docs[i]},
                    vector={
                        DENSE: dense[k].tolist(),
                        SPARSE: models.SparseVector(
                            indices=sparse.indices[lo:hi].tolist(), values=sparse.data[lo:hi].astype(float).tolist()
                        ),
                    },
                )
            )
        client.upsert(collection, points=points, wait=True)
        bar.update(len(points))
    bar.close()
    return {"collection": collection, "points": n, "dense_size": dim, "vectors": [DENSE, SPARSE]}
