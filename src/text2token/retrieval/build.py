"""Building an index folder (:mod:`text2token.retrieval.search`) from a corpus of any size, streaming.

Pass 1 reads the corpus in chunks and, per chunk, writes each document's dense embedding, its ``top_k`` LM-head
token ids and probabilities (to ``.npy`` files, row block by row block) and its ``docs.jsonl`` line, and adds its
LM-head logits to a running sum (for the corpus prior). After every chunk a progress file records how far the
folder is, so an interrupted build continues with ``resume=True`` and ends with the files an uninterrupted build
writes. Pass 2 reads the token files back in blocks, weights them against the prior (p / (p + π)) and streams the
CSR matrix into ``sparse.npz`` and the same vectors into ``sparse_vectors.jsonl``; the ANN graph (if any) is built
from the dense file in blocks. Memory does not grow with the corpus except for the ANN graph itself, which usearch
keeps in memory while building, and an 8-byte hash per document id (to reject repeated ids).

Everything is written under ``OUTPUT.partial/``, which replaces ``OUTPUT`` only when complete.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
import zipfile
from pathlib import Path

import numpy as np
import torch

from ..errors import Text2TokenError
from ..fingerprint import model_fingerprint
from ..lock import RunLock
from ..modes import CHUNK_SIZE, AnnDtype, SparseWeighting
from ..progress import progress_bar
from ..resumable import NpyFile, Source, process_group, recorded_progress
from ..targets.model_derived import prior_from_logit_sum
from ..textio import replace_directory, write_atomic, write_json_atomic
from .ann import ANN_AUTO_MIN_DOCUMENTS, ANN_FILE, build_ann
from .passages import PassageSource, PassageSplitter
from .top_tokens import DEFAULT_QUERY_TOP_K, DEFAULT_TOP_K, INDEX_FILE, TopTokens, weights

ANN_CHOICES = ("auto", "on", "off")
PROGRESS_FILE = "progress.json"
LOGIT_SUM_FILE = "logit_sum.npy"
TOP_IDS_FILE, TOP_PROBS_FILE = "top_ids.npy", "top_probs.npy"  # pass 1's per-document tokens, removed at the end
BLOCK = 8192  # rows per block in pass 2 (its memory: the block's sparse_vectors.jsonl text, ~25 MB at 256 tokens)


def build_index(
    model,
    docs,
    output: str | os.PathLike,
    top_k: int = DEFAULT_TOP_K,
    batch_size: int = 32,
    model_ref: str = "",
    show_progress_bar: bool = True,
    ann: str = "auto",
    query_top_k: int = DEFAULT_QUERY_TOP_K,
    weighting: str = "prior_ratio",
    resume: bool = False,
    chunk: int = CHUNK_SIZE,
    ann_dtype: str = "f16",
    passages: bool = False,
    passage_overlap: int | None = None,
) -> dict:
    """Index ``docs`` — a list of dicts with ``id`` and ``text``, or a :class:`~text2token.streaming.Source`
    (a file read in chunks) — into the folder ``output``; returns its summary.

    ``ann``: also build an approximate-nearest-neighbour graph of the dense vectors (:mod:`text2token.retrieval.ann`) —
    ``auto`` from ``ANN_AUTO_MIN_DOCUMENTS`` documents, ``on`` always, ``off`` never (exact search only);
    ``ann_dtype``: its vectors' precision, ``f16``, ``i8`` or ``b1`` (sign bits); search rescores its candidates by
    the float vectors.
    ``resume``: continue an interrupted build of the same file with the same model and settings.
    ``passages``: index each document as passages that fit the model's window (:mod:`text2token.retrieval.passages`,
    up to ``passage_overlap`` tokens shared by neighbours, None: the default); search then ranks documents by their best passage.

    A local model is recorded by its path relative to the index (so index and model can move together) and
    its absolute path; every model by a fingerprint of its weights, checked when ``--model`` relocates it."""
    if ann not in ANN_CHOICES:
        raise Text2TokenError(f"ann must be one of {', '.join(ANN_CHOICES)}, got '{ann}'")
    AnnDtype.require(ann_dtype, "ann_dtype", Text2TokenError)
    SparseWeighting.require(weighting, "weighting", Text2TokenError)
    model.check_top_k(top_k)
    model.check_top_k(query_top_k)
    if process_group() is not None:
        raise Text2TokenError(
            "index runs in one process (not under accelerate launch with several); 'encode' "
            "splits a corpus across processes"
        )
    source = (
        docs if isinstance(docs, Source) else Source.from_records([d["id"] for d in docs], [d["text"] for d in docs])
    )
    if resume and source.stdin:
        raise Text2TokenError("--resume needs a file input, not standard input")
    source.check_unique_ids()
    if passages:
        source = PassageSource(source, PassageSplitter(model, passage_overlap), show_progress_bar)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with RunLock.for_output(output, "index build"):  # one writer at a time: a second build is refused
        return _build_locked(
            model,
            source,
            output,
            top_k,
            batch_size,
            model_ref,
            show_progress_bar,
            ann,
            query_top_k,
            weighting,
            resume,
            chunk,
            ann_dtype,
        )


def _build_locked(
    model,
    source,
    output: Path,
    top_k,
    batch_size,
    model_ref,
    show_progress_bar,
    ann,
    query_top_k,
    weighting,
    resume,
    chunk,
    ann_dtype,
) -> dict:

    rows, dim = source.rows, model.backbone.config.hidden_size
    partial = output.with_name(output.name + ".partial")
    fingerprint = source.fingerprint(model, top_k=top_k, batch_size=batch_size, chunk=chunk)
    state = _start(partial, fingerprint, resume)
    t0 = time.perf_counter()
    start = state["rows_done"] if state else 0
    logit_sum = np.load(partial / LOGIT_SUM_FILE) if state else np.zeros(model.lm_head.weight.shape[0], np.float64)
    if not state:
        partial.mkdir(parents=True)
        NpyFile.create(partial / "dense.npy", rows, dim, "<f4")
        NpyFile.create(partial / TOP_IDS_FILE, rows, top_k, "<i4")
        NpyFile.create(partial / TOP_PROBS_FILE, rows, top_k, "<f4")
    sinks = [NpyFile(partial / name) for name in ("dense.npy", TOP_IDS_FILE, TOP_PROBS_FILE)]
    docs_written = state["docs_bytes"] if state else 0
    truncated = state.get("truncated", 0) if state else 0  # documents longer than the window, cut to it
    docs_fh = open(partial / "docs.jsonl", "r+b" if docs_written else "wb")
    docs_fh.truncate(docs_written)
    docs_fh.seek(docs_written)
    bar = progress_bar(total=rows, initial=start, desc="index", unit="doc", disable=not show_progress_bar)
    try:
        for first, ids, texts in source.chunks(start, chunk):
            top = TopTokens(model, texts, top_k, batch_size, on_batch=bar.update)
            truncated += model.count_truncated(texts)
            for sink, block in zip(sinks, (top.dense, top.ids.astype(np.int32), top.probs)):
                sink.write(first, block)
            docs_fh.write(
                "".join(json.dumps(source.record(i, t), ensure_ascii=False) + "\n" for i, t in zip(ids, texts)).encode(
                    "utf-8"
                )
            )
            docs_fh.flush()
            os.fsync(docs_fh.fileno())
            logit_sum += top.logit_sum
            if fingerprint is not None:
                write_atomic(partial / LOGIT_SUM_FILE, lambda tmp, total=logit_sum: np.save(tmp, total), suffix=".npy")
                write_json_atomic(
                    partial / PROGRESS_FILE,
                    {
                        "rows_done": first + len(texts),
                        "docs_bytes": docs_fh.tell(),
                        "truncated": truncated,
                        "fingerprint": fingerprint,
                    },
                )
    finally:
        bar.close()
        docs_fh.close()
        for sink in sinks:
            sink.close()

    prior = prior_from_logit_sum(torch.from_numpy(logit_sum), rows).numpy()
    np.save(partial / "prior.npy", prior)
    keys = ({k: r[k] for k in ("id", "passage") if k in r} for r in _doc_ids(partial))  # a passage: its document
    nnz = write_sparse(partial, prior, weighting, model.lm_head.weight.shape[0], keys)
    local = bool(model_ref) and Path(model_ref).exists()
    where = (
        {
            "model": os.path.relpath(Path(model_ref).resolve(), output.resolve()),
            "model_relative_to_index": True,
            "model_absolute": str(Path(model_ref).resolve()),
        }
        if local
        else {"model": model_ref}
    )
    weights_id = fingerprint["model"] if fingerprint else model_fingerprint(model.backbone)  # hashed once
    summary = {
        **where,
        "model_fingerprint": weights_id,
        "isotropy_fingerprint": model.correction_id,  # the dense rows' correction: queries must get the same
        "pooling": model.pooling,
        "attention": model.attention,
        "template": model.template,
        "max_length": model.max_length,
        "top_k": top_k,
        "query_top_k": query_top_k,
        "weighting": weighting,
        "documents": rows,
        "documents_truncated": truncated,  # longer than max_length tokens: only their first max_length are indexed
        **(
            {"passages": {**source.splitter.settings(), "documents": source.documents, "split": source.documents_split}}
            if isinstance(source, PassageSource)
            else {}
        ),
        "vocab_size": int(len(prior)),
        "sparse_nnz": nnz,
    }
    if ann == "on" or (ann == "auto" and rows >= ANN_AUTO_MIN_DOCUMENTS):
        dense = NpyFile(partial / "dense.npy")
        try:
            build_ann(dense.blocks(BLOCK), partial / ANN_FILE, dim, ann_dtype)
        finally:
            dense.close()
        summary["ann"] = {
            "file": ANN_FILE,
            "bytes": (partial / ANN_FILE).stat().st_size,
            "library": "usearch",
            "dtype": ann_dtype,
        }
    summary["sparse_bytes"] = (partial / "sparse.npz").stat().st_size
    summary["dense_bytes"] = (partial / "dense.npy").stat().st_size
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    for name in (TOP_IDS_FILE, TOP_PROBS_FILE, LOGIT_SUM_FILE, PROGRESS_FILE):
        (partial / name).unlink(missing_ok=True)
    summary["files"] = {p.name: p.stat().st_size for p in sorted(partial.iterdir()) if p.is_file()}  # checked on open
    summary["generation"] = uuid.uuid4().hex  # a reader re-reads it after opening the files: a swap is detected
    (partial / INDEX_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    replace_directory(partial, output)
    return summary


def _start(partial: Path, fingerprint: dict | None, resume: bool) -> dict | None:
    """The progress of an interrupted build in ``partial`` to continue from
    (:func:`text2token.resumable.recorded_progress`); None: start afresh, clearing any leftover that holds no
    finished chunk."""
    progress = partial / PROGRESS_FILE
    if progress.is_file():
        return recorded_progress(
            progress, fingerprint, resume, "index build", str(partial), ("rows_done", "docs_bytes")
        )
    if partial.exists():
        shutil.rmtree(partial)
    return None


def _doc_ids(folder: Path):
    with open(folder / "docs.jsonl", encoding="utf-8") as fh:
        for line in fh:
            yield json.loads(line)


def write_sparse(folder: Path, prior: np.ndarray, weighting: str, vocab: int, ids) -> int:
    """Pass 2: ``sparse.npz`` (documents × vocabulary CSR, as :func:`scipy.sparse.save_npz` writes it, with sorted
    indices) and ``sparse_vectors.jsonl`` from pass 1's token files, ``BLOCK`` rows at a time; returns the nnz."""
    top_ids, top_probs = NpyFile(folder / TOP_IDS_FILE), NpyFile(folder / TOP_PROBS_FILE)
    rows, k = top_ids.rows, top_ids.width
    nnz = rows * k
    index_dtype = np.dtype("<i4") if nnz < 2**31 else np.dtype("<i8")
    ids = iter(ids)
    try:
        with (
            zipfile.ZipFile(folder / "sparse.npz", "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as zf,
            open(folder / "sparse_vectors.jsonl", "w", encoding="utf-8") as vectors,
        ):
            with _npy_member(zf, "indices.npy", (nnz,), index_dtype) as fh:
                for _, tok in top_ids.blocks(BLOCK):
                    fh.write(np.sort(tok, axis=1).astype(index_dtype).tobytes())
            with _npy_member(zf, "indptr.npy", (rows + 1,), index_dtype) as fh:
                for lo in range(0, rows + 1, BLOCK):
                    fh.write(
                        (np.arange(lo, min(lo + BLOCK, rows + 1), dtype=np.int64) * k).astype(index_dtype).tobytes()
                    )
            _npy_whole(zf, "format.npy", np.array("csr"))
            _npy_whole(zf, "shape.npy", np.array([rows, vocab], dtype=np.int64))
            with _npy_member(zf, "data.npy", (nnz,), np.dtype("<f4")) as fh:
                for first, tok in top_ids.blocks(BLOCK):
                    w = weights(top_probs.read(first, BLOCK), tok, prior, weighting)
                    order = np.argsort(tok, axis=1)
                    tok, w = np.take_along_axis(tok, order, 1), np.take_along_axis(w, order, 1)
                    fh.write(w.astype("<f4").tobytes())
                    vectors.write(
                        "".join(
                            json.dumps({**next(ids), "indices": t.tolist(), "values": [round(float(x), 6) for x in v]})
                            + "\n"
                            for t, v in zip(tok, w)
                        )
                    )
    finally:
        top_ids.close()
        top_probs.close()
    return nnz


class _npy_member:
    """A ``.npy`` member of a zip archive written block by block (header first; the caller writes the data)."""

    def __init__(self, zf: zipfile.ZipFile, name: str, shape: tuple, dtype: np.dtype):
        self.fh = zf.open(_member(name), "w", force_zip64=True)
        np.lib.format.write_array_header_1_0(
            self.fh, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
        )

    def __enter__(self):
        return self.fh

    def __exit__(self, *exc):
        self.fh.close()


def _npy_whole(zf: zipfile.ZipFile, name: str, array: np.ndarray) -> None:
    with zf.open(_member(name), "w", force_zip64=True) as fh:
        np.lib.format.write_array(fh, array, allow_pickle=False)


def _member(name: str) -> zipfile.ZipInfo:
    """A deflated zip member with a fixed date, so that the same index is the same bytes."""
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    return info
