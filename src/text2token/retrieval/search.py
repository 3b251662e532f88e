"""Searching an index folder: dense (cosine of the pooled embeddings), sparse (aligned-token style: each text
becomes the LM-head tokens its embedding predicts, the top-k of softmax(lm_head(pooled)), each weighted by how much
more this text predicts it than texts in general do — ``r_v = p_v / (p_v + π_v)`` with ``π`` the corpus prior, the
same ratio stage 2 builds its targets from — L2-normalised; documents keep ``top_k`` tokens, queries
``query_top_k``; the score is the dot product) or hybrid (the two mixed per query, min-max rescaled, equal weights
by default), exact or over ANN candidates. Dividing by the prior removes the tokens every text predicts; how much
that and each mode are worth is measured in docs/benchmarks.md ("Dense vs sparse vs hybrid retrieval").

An index folder holds ``sparse.npz`` (scipy CSR, documents × vocabulary), ``prior.npy`` (π, for the queries),
``dense.npy`` (normalised dense embeddings), ``docs.jsonl`` (id and text), ``sparse_vectors.jsonl`` (the
``{"id", "indices", "values"}`` form that sparse-vector stores accept), optionally ``dense.usearch`` (an ANN graph,
:mod:`text2token.retrieval.ann`) and ``index.json`` (model and settings). :mod:`text2token.retrieval.build` writes it, streaming
and atomically.
"""

from __future__ import annotations

import json
import logging
import os
import time
import zipfile
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from ..errors import Text2TokenError
from ..fingerprint import model_fingerprint
from ..model import Text2TokenModel
from ..modes import AnnDtype, Attention, Fusion, Pooling, SparseWeighting
from .ann import DenseANN
from .passages import PASSAGE_POOL
from .top_tokens import INDEX_FILE, TopTokens

logger = logging.getLogger(__name__)
MODES = ("hybrid", "sparse", "dense")


RRF_K = 60
# Chosen on the dev half (queries 0-249) of the bundled WordNet task with the `make run` model
# (benchmarks/retrieval.py --sweep): min-max α=0.5 was the best hybrid there; docs/benchmarks.md has the whole table.
DEFAULT_FUSION = Fusion.MINMAX.value
DEFAULT_ALPHA = 0.5
RESCORE_FACTOR = 4  # with an ANN graph, dense search rescores this many times ``top`` graph candidates
ANN_CANDIDATES = 100  # with an ANN graph, hybrid search fuses this many dense and this many sparse candidates


def fuse(
    dense: np.ndarray, sparse: np.ndarray, alpha: float = DEFAULT_ALPHA, fusion: str = DEFAULT_FUSION
) -> np.ndarray:
    """Hybrid scores (queries × documents) from the two modes' scores. ``minmax``: each mode's scores rescaled to
    [0, 1] per query, then ``alpha·dense + (1−alpha)·sparse``; ``rrf``: reciprocal-rank fusion with the same
    weights, ``alpha/(60+rank_dense) + (1−alpha)/(60+rank_sparse)``; ``raw``: the unnormalised mix (the two
    modes are on different scales: a cosine spread over a narrow band vs a sparse dot product)."""
    if fusion == "raw":
        return alpha * dense + (1 - alpha) * sparse
    if fusion == "minmax":

        def scaled(x):
            lo, hi = x.min(axis=1, keepdims=True), x.max(axis=1, keepdims=True)
            return (x - lo) / np.maximum(hi - lo, 1e-12)

        return alpha * scaled(dense) + (1 - alpha) * scaled(sparse)
    if fusion == "rrf":

        def ranks(x):
            r = np.empty_like(x, dtype=np.float64)
            order = np.argsort(-x, axis=1, kind="stable")
            np.put_along_axis(r, order, np.arange(1, x.shape[1] + 1, dtype=np.float64)[None, :].repeat(len(x), 0), 1)
            return r

        return alpha / (RRF_K + ranks(dense)) + (1 - alpha) / (RRF_K + ranks(sparse))
    raise Text2TokenError(f"fusion must be one of {', '.join(Fusion.values())}, got '{fusion}'")


def _check_search(mode: str, alpha: float) -> None:
    if mode not in MODES:
        raise Text2TokenError(f"mode must be one of {', '.join(MODES)}, got '{mode}'")
    if not 0 <= alpha <= 1:
        raise Text2TokenError(f"alpha must be in [0, 1], got {alpha}")


def _read_index_json(folder: Path) -> dict:
    try:
        info = json.loads((folder / INDEX_FILE).read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise Text2TokenError(
            f"index {folder}: {INDEX_FILE} is damaged (not valid JSON: {exc}); rebuild the index"
        ) from None
    if not isinstance(info, dict):
        raise Text2TokenError(f"index {folder}: {INDEX_FILE} is damaged (expected a JSON object); rebuild the index")
    # numbers and names from a file someone handed over are checked like the command line's
    for key, low in (("documents", 0), ("top_k", 1), ("query_top_k", 1), ("max_length", 8)):
        value = info.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not low <= value <= 10**12):
            raise Text2TokenError(
                f"index {folder}: {INDEX_FILE} field '{key}' must be an integer >= {low}, got {value!r}"
            )
    for key, allowed in (("pooling", Pooling), ("attention", Attention), ("weighting", SparseWeighting)):
        if key in info and not allowed.has(info[key]):
            raise Text2TokenError(
                f"index {folder}: {INDEX_FILE} field '{key}' must be one of {', '.join(allowed.values())}, "
                f"got {info[key]!r}"
            )
    ann = info.get("ann")
    if ann and (not isinstance(ann, dict) or Path(str(ann.get("file", ""))).name != ann.get("file")):
        raise Text2TokenError(f"index {folder}: {INDEX_FILE} field 'ann' must name a file inside the index")
    if ann and not AnnDtype.has(ann.get("dtype", "f16")):
        raise Text2TokenError(
            f"index {folder}: {INDEX_FILE} field 'ann.dtype' must be one of {', '.join(AnnDtype.values())}, "
            f"got {ann.get('dtype')!r}"
        )
    return info


def _generation(folder: Path) -> str | None:
    """The ``generation`` an index folder's index.json records now (None: none, or unreadable at this moment)."""
    try:
        return json.loads((folder / INDEX_FILE).read_text(encoding="utf-8")).get("generation")
    except (OSError, ValueError, AttributeError):
        return None


def check_index_files(folder: Path, info: dict) -> None:
    """Every file an index records (``files``: name → bytes, written last by the builder) exists with its size: a
    missing or truncated file is one line naming it, before anything is read."""
    for name, size in (info.get("files") or {}).items():
        path = folder / name
        if Path(name).name != name:
            raise Text2TokenError(f"index {folder}: {INDEX_FILE} names a file outside the index ({name!r})")
        if not path.is_file():
            raise Text2TokenError(f"index {folder}: {name} is missing; rebuild the index")
        actual = path.stat().st_size
        if actual != size:
            raise Text2TokenError(
                f"index {folder}: {name} has {actual} bytes, {INDEX_FILE} records {size} "
                f"({'truncated' if actual < size else 'changed'}); rebuild the index"
            )


class SearchIndex:
    """A loaded index folder; ``search`` ranks documents for queries (hybrid by default, sparse, or dense).

    The model is the one the index was built with (found relative to the index, then at its absolute path),
    or ``model`` (a loaded model) / ``model_path`` (a relocated folder, checked against the recorded weights)."""

    def __init__(
        self,
        folder: str | os.PathLike,
        model=None,
        model_path: str | None = None,
        device=None,
        dtype=None,
        load_model: bool = True,
    ):
        folder = Path(folder)
        if not (folder / INDEX_FILE).is_file():
            raise Text2TokenError(
                f"{folder} is not a text2token index (no {INDEX_FILE}); build one with text2token index"
            )
        self.folder = folder
        for attempt in range(5):  # a rebuild may swap the folder while it is read: read until one generation is whole
            try:
                self._open_files(folder)
            except Text2TokenError:
                if attempt == 4 or _generation(folder) == self._generation_read:
                    raise  # a damaged file, not a swap
            else:
                if _generation(folder) == self._generation_read:
                    break
            time.sleep(0.05 * (attempt + 1))
        else:
            raise Text2TokenError(f"index {folder} kept changing while it was opened (is it being rebuilt?); try again")
        self.ann = None
        if self.info.get("ann"):
            self.ann = DenseANN(
                folder / self.info["ann"]["file"], self.dense.shape[1], self.info["ann"].get("dtype", "f16")
            )
        if model is None and load_model:
            self.model_source = model_path or self._recorded_model()
            if not model_path:  # a path taken from the index file: resolved and said before it is loaded
                logger.info(
                    "index %s: loading the model it records, %s (--model / model_path= to use another)",
                    folder,
                    self.model_source,
                )
            model = Text2TokenModel.from_pretrained(
                self.model_source,
                pooling=self.info["pooling"],
                attention=self.info["attention"],
                template=self.info["template"],
                max_length=self.info["max_length"],
                device=device,
                dtype=dtype,
            )
            if model_path and self.info.get("model_fingerprint"):
                if model_fingerprint(model.backbone) != self.info["model_fingerprint"]:
                    raise Text2TokenError(
                        f"--model {model_path} is not the model {folder} was built with (its weights "
                        "differ): use that model, or rebuild the index with this one"
                    )
        recorded = self.info.get("isotropy_fingerprint")
        if model is not None and "isotropy_fingerprint" in self.info and recorded != model.correction_id:
            raise Text2TokenError(
                f"the model's isotropy correction is not the one {folder} was built with "
                f"({'none' if recorded is None else 'fingerprint ' + recorded} then, "
                f"{'none' if model.correction_id is None else 'fingerprint ' + model.correction_id} now: it was "
                "refitted or removed since): rebuild the index, or restore the correction"
            )
        self.model = model

    def _open_files(self, folder: Path) -> None:
        self._generation_read = None  # the generation these files belong to (None until index.json is read)
        self.info = _read_index_json(folder)
        self._generation_read = self.info.get("generation")
        check_index_files(folder, self.info)
        self.weighting = self.info.get("weighting", "prob")  # indexes from before the prior ratio: plain p
        try:
            self.sparse = sp.load_npz(folder / "sparse.npz").tocsr()
            self.prior = np.load(folder / "prior.npy") if self.weighting == "prior_ratio" else None
            self.dense = np.load(folder / "dense.npy", mmap_mode="r")  # rows read as needed
            with open(folder / "docs.jsonl", encoding="utf-8") as fh:
                self.docs = [json.loads(line) for line in fh]
        except FileNotFoundError as exc:
            raise Text2TokenError(f"index {folder}: {Path(exc.filename).name} is missing; rebuild the index") from None
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:  # truncated .npz/.npy/.jsonl
            raise Text2TokenError(
                f"index {folder}: a file is damaged ({type(exc).__name__}: {exc}); rebuild the index"
            ) from None
        docs = self.info.get("documents")
        shapes = {
            "dense.npy rows": self.dense.shape[0],
            "sparse.npz rows": self.sparse.shape[0],
            "docs.jsonl lines": len(self.docs),
        }
        wrong = {k: v for k, v in shapes.items() if docs is not None and v != docs}
        if wrong:
            raise Text2TokenError(
                f"index {folder}: {', '.join(f'{k} = {v}' for k, v in wrong.items())}, but "
                f"{INDEX_FILE} records {docs} documents; rebuild the index"
            )

    def _recorded_model(self) -> str:
        ref = self.info["model"]
        if not self.info.get("model_relative_to_index"):
            return ref
        for candidate in (self.folder / ref, Path(self.info.get("model_absolute", ""))):
            if candidate.exists():
                return str(candidate.resolve())
        raise Text2TokenError(
            f"the model {self.folder} was built with is not at {self.folder / ref} nor at "
            f"{self.info.get('model_absolute')} (moved?): pass --model PATH"
        )

    def query_vectors(self, queries: list[str]) -> tuple[np.ndarray, sp.csr_matrix]:
        """The queries' L2-normalised dense vectors (Q×H) and sparse vectors (Q×V CSR), as search scores them
        (e.g. to query an exported vector store with)."""
        top = TopTokens(self.model, queries, self.info.get("query_top_k", self.info["top_k"]), desc="queries")
        return top.dense, top.sparse(self.weighting, self.prior)

    def scores(
        self, queries: list[str], mode: str = "hybrid", alpha: float = DEFAULT_ALPHA, fusion: str = DEFAULT_FUSION
    ) -> np.ndarray:
        """Queries × documents scores. ``mode``: sparse (dot product of the sparse vectors), dense (cosine), or
        hybrid (the two fused, see :func:`fuse`)."""
        _check_search(mode, alpha)
        q_dense, q_sparse = self.query_vectors(queries)
        s = (q_sparse @ self.sparse.T).toarray() if mode != "dense" else None
        d = q_dense @ self.dense.T if mode != "sparse" else None
        return {"sparse": s, "dense": d}.get(mode) if mode != "hybrid" else fuse(d, s, alpha, fusion)

    def search(
        self,
        query: str | list[str],
        top: int = 10,
        mode: str = "hybrid",
        alpha: float = DEFAULT_ALPHA,
        fusion: str = DEFAULT_FUSION,
        exact: bool = False,
        rescore: bool = True,
    ) -> list[dict] | list[list[dict]]:
        """The ``top`` best documents (rank, score, id, text) for a query, or a list of such lists for a list
        of queries (encoded together)."""
        if top < 1:
            raise Text2TokenError(f"top must be >= 1, got {top}")
        queries = [query] if isinstance(query, str) else list(query)
        out = []
        for rows, scores in self.ranked(queries, top, mode, alpha, fusion, exact, rescore):
            out.append(
                [{"rank": r + 1, "score": float(s), **self.docs[i]} for r, (i, s) in enumerate(zip(rows, scores))]
            )
        return out[0] if isinstance(query, str) else out

    @property
    def passages(self) -> bool:
        """Rows are passages of documents (``index --passages``): rankings are of documents, by their best passage."""
        return bool(self.info.get("passages"))

    def ranked(
        self,
        queries: list[str],
        top: int = 10,
        mode: str = "hybrid",
        alpha: float = DEFAULT_ALPHA,
        fusion: str = DEFAULT_FUSION,
        exact: bool | None = None,
        rescore: bool = True,
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """For each query, the ``top`` document rows and their scores, best first. Exact (every document scored)
        unless the index has an ANN graph (then dense candidates come from the graph and hybrid fuses the union of
        the dense and sparse candidate lists); ``exact=True`` forces the exact path. With a graph, dense search
        takes ``RESCORE_FACTOR``·``top`` candidates and ranks them by the float vectors' cosines (hybrid always
        uses the float cosines of its candidates); ``rescore=False`` returns the graph's own ranking and scores.
        In a passage index (``index --passages``) the rows are passages and each document appears once, as its
        best-scoring passage (with a graph, among ``PASSAGE_POOL``·``top`` passage candidates)."""
        _check_search(mode, alpha)
        if self.passages:  # rows are passages: the best passage of each document, ``top`` documents
            exact_path = self.ann is None or mode == "sparse" or exact
            pool = len(self.docs) if exact_path else top * PASSAGE_POOL
            return [
                self._best_passages(r, sc, top)
                for r, sc in self._ranked_rows(queries, pool, mode, alpha, fusion, exact, rescore)
            ]
        return self._ranked_rows(queries, top, mode, alpha, fusion, exact, rescore)

    def _best_passages(self, rows: np.ndarray, scores: np.ndarray, top: int) -> tuple[np.ndarray, np.ndarray]:
        """Of rows ranked best first, the first (best) row of each document, up to ``top`` documents."""
        seen, keep = set(), []
        for k, i in enumerate(rows):
            doc = self.docs[i]["id"]
            if doc not in seen:
                seen.add(doc)
                keep.append(k)
                if len(keep) == top:
                    break
        return rows[keep], scores[keep]

    def _ranked_rows(self, queries, top, mode, alpha, fusion, exact, rescore) -> list[tuple[np.ndarray, np.ndarray]]:
        """:meth:`ranked` over the index's rows (documents, or passages of an ``index --passages`` folder)."""
        if self.ann is None or mode == "sparse" or exact:
            out = []
            for scores in self.scores(queries, mode, alpha, fusion):
                best = np.argsort(-scores, kind="stable")[:top]
                out.append((best, scores[best]))
            return out
        q_dense, q_sparse = self.query_vectors(queries)
        pool = max(top, ANN_CANDIDATES)
        rows, cos = self.ann.search(q_dense, pool if mode == "hybrid" else top * (RESCORE_FACTOR if rescore else 1))
        if mode == "dense":
            if not rescore:  # the graph's own scores (f16, i8 or sign-bit cosines)
                return [(r[r >= 0][:top], c[r >= 0][:top]) for r, c in zip(rows, cos)]
            out = []
            for i, r in enumerate(rows):
                r = np.sort(r[r >= 0])  # rows read in file order
                d = q_dense[i] @ np.asarray(self.dense[r]).T  # the float vectors' exact cosines
                best = np.argsort(-d, kind="stable")[:top]
                out.append((r[best], d[best]))
            return out
        sparse_scores = (q_sparse @ self.sparse.T).tocsr()  # one product for all queries
        out = []
        for i in range(len(queries)):
            sparse_row = sparse_scores.getrow(i).toarray().ravel()
            candidates = np.union1d(rows[i][rows[i] >= 0], np.argsort(-sparse_row, kind="stable")[:pool])
            d = q_dense[i] @ np.asarray(self.dense[candidates]).T  # exact cosines of the candidates
            fused = fuse(d[None, :], sparse_row[candidates][None, :], alpha, fusion)[0]
            best = np.argsort(-fused, kind="stable")[:top]
            out.append((candidates[best], fused[best]))
        return out
