"""Reading a training corpus: validated, streamed, shuffled with a seed, capped."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..textio import iter_texts, read_lines_at

_CORPORA = Path(__file__).resolve().parent.parent / "data" / "corpus"
BUNDLED_CORPUS = _CORPORA / "brown_sentences.txt"
# Corpora shipped with the package (licences in data/corpus/README.md), named as ``bundled:NAME`` in data.train_file.
BUNDLED = {"brown": BUNDLED_CORPUS, "wiki": _CORPORA / "wiki_sentences.txt"}
BUNDLED_PREFIX = "bundled:"


def corpus_path(train_file: str | None) -> Path:
    """The corpus file a config names (``data.train_file``): a path, ``bundled:brown`` / ``bundled:wiki`` (the
    corpora shipped with the package), or null for the bundled Brown corpus."""
    if not train_file:
        return BUNDLED_CORPUS
    if train_file.startswith(BUNDLED_PREFIX):
        name = train_file[len(BUNDLED_PREFIX) :]
        if name not in BUNDLED:
            raise ConfigError(f"no bundled corpus '{name}'; bundled: {', '.join(BUNDLED_PREFIX + n for n in BUNDLED)}")
        return BUNDLED[name]
    return Path(train_file)


def read_corpus(path: Path, field: str, seed: int, limit: int | None, errors: str = "strict") -> tuple[list[str], dict]:
    """Read a corpus (blank lines skipped and counted), shuffle it with ``seed``, keep ``limit`` texts.

    Streams the file once (validating every line, hashing the texts, keeping only each line's byte
    offset), then reads just the chosen lines: memory grows with 8 bytes per line plus the texts kept,
    so a corpus larger than memory works. Returns the texts and a report (file, hash, counts).
    """
    counts: dict = {}
    digest = hashlib.sha256()
    offsets = []
    for i, (offset, text) in enumerate(iter_texts(path, field=field, skip_blank=True, errors=errors, counts=counts)):
        if i:
            digest.update(b"\n")
        digest.update(text.encode("utf-8"))
        offsets.append(offset)
    offsets = np.asarray(offsets, dtype=np.int64)
    order = np.random.default_rng(seed).permutation(len(offsets))[:limit]
    is_jsonl = Path(path).suffix.lower() == ".jsonl"
    texts = read_lines_at(path, offsets[order], field if is_jsonl else None, errors)
    return texts, {
        "file": str(path),
        "sha256_16": digest.hexdigest()[:16],
        "lines": len(offsets),
        **counts,
        "used": len(order),
    }


def texts_digest(texts: list[str]) -> str:
    """A short hash of an exact list of texts (order included)."""
    return hashlib.sha256("\n".join(texts).encode("utf-8")).hexdigest()[:16]
