"""Encoding a corpus of any size: the input is read in chunks and each chunk's rows are written to the output as
they are computed (``.npy`` blocks written at their offset, ``.jsonl`` appended, ``.parquet`` row groups), so memory does not
grow with the corpus. After every chunk a progress file records how far the output is; an interrupted run continues
with ``resume=True`` from there and writes exactly the bytes an uninterrupted run writes (chunks are aligned to
the same rows and encoded the same way). The output appears under its name only when complete.

Under ``accelerate launch`` (several processes, e.g. one per GPU) the chunks are split into one contiguous range per
process; each process encodes its range on its own device and writes it — ``.npy`` rows straight into the one output
file at their offsets, ``.jsonl`` a shard that the main process appends in order at the end — so the output is the
file one process writes, byte for byte. Each process keeps its own progress file, so ``--resume`` works there too.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .errors import Text2TokenError
from .modes import CHUNK_SIZE
from .progress import progress_bar
from .resumable import NpyFile, Source, process_group, recorded_progress
from .textio import write_json_atomic

FORMATS = (".npy", ".jsonl", ".parquet")


def encode_file(
    model,
    source: Source,
    output: str,
    *,
    batch_size: int = 32,
    normalize: bool = False,
    prompt: str | None = None,
    resume: bool = False,
    chunk: int = CHUNK_SIZE,
    show_progress_bar: bool = True,
) -> dict:
    """Encode every text of ``source`` into ``output`` (.npy, .jsonl or .parquet), streaming; returns a summary
    (rows, dimension, rows resumed from, texts truncated). One encode writes an output at a time (a lock file beside
    it, ``.NAME.lock``, held by the main process): a second one is refused instead of wiping the first's work."""
    from .lock import RunLock

    group = process_group()
    if group is not None and not group.is_main_process:  # the main process holds the lock for all of them
        return _encode_file(model, source, output, batch_size, normalize, prompt, resume, chunk, show_progress_bar)
    with RunLock.for_output(output, "encode"):
        return _encode_file(model, source, output, batch_size, normalize, prompt, resume, chunk, show_progress_bar)


def _encode_file(
    model,
    source: Source,
    output: str,
    batch_size: int,
    normalize: bool,
    prompt: str | None,
    resume: bool,
    chunk: int,
    show_progress_bar: bool,
) -> dict:
    output = Path(output)
    fmt = output.suffix.lower()
    if fmt not in FORMATS:
        raise Text2TokenError(f"--output must end in .npy, .jsonl or .parquet, got '{output}'")
    if resume and (source.stdin or fmt == ".parquet"):
        raise Text2TokenError("--resume needs a file input and a .npy or .jsonl output")
    rows, dim = source.rows, model.backbone.config.hidden_size
    group = process_group()
    world, rank = (group.num_processes, group.process_index) if group is not None else (1, 0)
    main = rank == 0
    if world > 1 and (fmt == ".parquet" or source.stdin):
        raise Text2TokenError("several processes write .npy or .jsonl output from a file input (not .parquet or stdin)")
    chunks = -(-rows // chunk)  # this process's contiguous range of chunks, as rows
    lo, hi = min(rows, rank * chunks // world * chunk), min(rows, (rank + 1) * chunks // world * chunk)
    partial = output.with_name(output.name + ".partial")
    progress_file = _progress_path(output, rank, world)
    shard = partial if world == 1 or fmt == ".npy" else _shard_path(partial, rank)
    fingerprint = source.fingerprint(
        model, normalize=normalize, prompt=prompt, batch_size=batch_size, chunk=chunk, format=fmt, processes=world
    )
    start, written = lo, 0
    if main and partial.exists() and not any(progress_file.parent.glob(output.name + ".progress*.json")):
        partial.unlink()  # interrupted before its first chunk was complete: nothing computed is lost
    if shard != partial and shard.exists() and not progress_file.is_file():
        shard.unlink()
    if progress_file.is_file():
        state = _resumable_state(progress_file, shard, output, fingerprint, resume, fmt, rows, dim)
        start, written = state["rows_done"], state["bytes_done"]
    if fmt == ".npy" and main and not partial.exists():
        NpyFile.create(partial, rows, dim)  # the whole file, before any process writes its rows
    if group is not None:
        group.wait_for_everyone()
    sink = _open_sink(fmt, shard, rows, dim, start, written)
    bar = progress_bar(
        total=hi - lo, initial=start - lo, desc="encode", unit="text", disable=not (show_progress_bar and main)
    )
    truncated = 0
    try:
        for first, ids, texts in source.chunks(start, chunk, stop=hi):
            truncated += model.count_truncated(texts)
            emb = model.encode(
                texts, batch_size=batch_size, normalize_embeddings=normalize, prompt=prompt, show_progress_bar=False
            )
            written = sink.write(first, ids, emb)
            if fingerprint is not None:
                write_json_atomic(
                    progress_file, {"rows_done": first + len(texts), "bytes_done": written, "fingerprint": fingerprint}
                )
            bar.update(len(texts))
    finally:
        bar.close()
        sink.close()
    if group is not None:
        import torch
        from accelerate.utils import reduce

        truncated = int(reduce(torch.tensor([truncated], device=group.device), reduction="sum").item())
        group.wait_for_everyone()
    if main:
        if shard != partial:  # .jsonl shards, appended in process order
            with open(partial, "wb") as out:
                for r in range(world):
                    with open(_shard_path(partial, r), "rb") as fh:
                        while block := fh.read(1 << 24):
                            out.write(block)
                out.flush()
                os.fsync(out.fileno())
        os.replace(partial, output)
        for r in range(world):
            _shard_path(partial, r).unlink(missing_ok=True)
            _progress_path(output, r, world).unlink(missing_ok=True)
    if group is not None:
        group.wait_for_everyone()
    return {"rows": rows, "dim": dim, "resumed_from": start, "truncated": truncated, "processes": world}


def _resumable_state(
    progress_file: Path,
    shard: Path,
    output: Path,
    fingerprint: dict | None,
    resume: bool,
    fmt: str,
    rows: int,
    dim: int,
) -> dict:
    """The progress an interrupted encode recorded, once it is checked that what it describes can be continued
    (:func:`text2token.resumable.recorded_progress`) and that the partial output exists and is as long as recorded.
    Otherwise one line naming the files to delete (both: the partial output and its progress file)."""
    leftovers = f"{shard} and {progress_file}"
    state = recorded_progress(progress_file, fingerprint, resume, "encode", leftovers, ("rows_done", "bytes_done"))
    done, written = state["rows_done"], state["bytes_done"]
    if not shard.is_file():
        raise Text2TokenError(
            f"cannot resume {output}: {progress_file} records {done} rows written to {shard}, which "
            f"no longer exists; delete {progress_file} to start over"
        )
    size = shard.stat().st_size
    if fmt == ".npy":
        try:
            expected = NpyFile(shard).data_start + rows * dim * 4
        except (OSError, ValueError):
            expected = -1
        if size != expected:
            raise Text2TokenError(
                f"cannot resume {output}: {shard} is not the {rows}×{dim} float32 array this encode "
                f"writes ({size} bytes); delete {leftovers} to start over"
            )
    elif size < written:
        raise Text2TokenError(
            f"cannot resume {output}: {shard} holds {size} bytes but {progress_file} records {written} "
            f"written; delete {leftovers} to start over"
        )
    return state


def _progress_path(output: Path, rank: int, world: int) -> Path:
    """Where a process records how far its rows are written (one file per process under several)."""
    return output.with_name(output.name + (f".progress.rank{rank}.json" if world > 1 else ".progress.json"))


def _shard_path(partial: Path, rank: int) -> Path:
    """A process's own .jsonl rows under several processes, appended to ``partial`` in rank order at the end."""
    return partial.with_name(f"{partial.name}.rank{rank}")


def _open_sink(fmt: str, path: Path, rows: int, dim: int, start: int, written: int):
    if fmt == ".npy":
        return _NpyRows(path)
    if fmt == ".jsonl":
        return _JsonlSink(path, written)
    return _ParquetSink(path, dim)


class _NpyRows(NpyFile):
    """The embedding rows of ``encode`` into a .npy file (a sink with the interface of the other formats)."""

    def write(self, first: int, ids, emb) -> int:
        super().write(first, emb)
        return 0


class _JsonlSink:
    def __init__(self, path: Path, written: int):
        self.fh = open(path, "r+b" if written else "wb")
        self.fh.truncate(written)
        self.fh.seek(written)

    def write(self, first, ids, emb) -> int:
        self.fh.write(
            "".join(json.dumps({"id": i, "embedding": row.tolist()}) + "\n" for i, row in zip(ids, emb)).encode("utf-8")
        )
        self.fh.flush()
        os.fsync(self.fh.fileno())
        return self.fh.tell()

    def close(self):
        self.fh.close()


class _ParquetSink:
    def __init__(self, path: Path, dim: int):
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise Text2TokenError("--output .parquet needs the pyarrow package: pip install pyarrow") from None
        self.pa, self.dim = pa, dim
        schema = pa.schema([("id", pa.string()), ("embedding", pa.list_(pa.float32(), dim))])
        self.writer = pq.ParquetWriter(str(path), schema)

    def write(self, first, ids, emb) -> int:
        pa = self.pa
        column = pa.FixedSizeListArray.from_arrays(pa.array(emb.ravel(), type=pa.float32()), self.dim)
        self.writer.write_table(pa.table({"id": pa.array(ids, type=pa.string()), "embedding": column}))
        return 0

    def close(self):
        self.writer.close()
