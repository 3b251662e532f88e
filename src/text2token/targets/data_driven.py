"""Stage-1 targets: a uniform distribution over the text's own meaningful tokens.

1. replace each run of non-word characters (punctuation, symbols, underscores) by a space;
2. drop English stopwords (scikit-learn's list), case-insensitively, word by word;
3. tokenize the cleaned text with the backbone tokenizer (at most ``max_length`` tokens);
4. drop special tokens and bare-whitespace pieces, judged by the tokenizer itself;
5. target = uniform over the unique remaining ids (every sub-word piece kept), or, with ``weighting="idf"``,
   proportional to each id's inverse document frequency over the texts being built (smoothed as scikit-learn's
   ``TfidfTransformer``: ``ln((1 + N) / (1 + df)) + 1``), so that rare, specific tokens weigh more than common ones.

Texts with no token left get no target; they are counted in ``skipped`` and not trained on.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from itertools import chain

import numpy as np
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from ..modes import TargetWeighting
from ..progress import progress_bar
from .store import SparseTargets

_NON_WORD = re.compile(r"[\W_]+")
STOPWORDS = frozenset(ENGLISH_STOP_WORDS)


def clean_text(text: str, stopwords: frozenset[str] = STOPWORDS) -> str:
    """Punctuation/symbol runs → space, then stopwords dropped; words keep their case."""
    words = _NON_WORD.sub(" ", text).split()
    return " ".join(w for w in words if w.lower() not in stopwords)


@dataclass
class BuildReport:
    texts: int
    kept: int
    skipped_no_content: int

    def as_dict(self) -> dict:
        return {"texts": self.texts, "kept": self.kept, "skipped_no_content": self.skipped_no_content}


class DataDrivenTargetBuilder:
    """Build data-driven targets with one tokenizer.

    >>> builder = DataDrivenTargetBuilder(tokenizer)              # doctest: +SKIP
    >>> builder.token_ids("The cats, sadly, were running!")       # doctest: +SKIP
    """

    def __init__(self, tokenizer, max_length: int = 128, weighting: str = "uniform"):
        TargetWeighting.require(weighting, "weighting")
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.weighting = weighting
        self.stopwords = STOPWORDS
        self._special = set(tokenizer.all_special_ids)
        self._is_content: dict[int, bool] = {}
        self._first_word_cache: dict[str, tuple[tuple[int, ...], int]] = {}  # word → (content ids, n tokens)
        self._word_cache: dict[str, tuple[tuple[int, ...], int]] = {}  # the same for " " + word
        self._per_word: bool | None = None  # decided on the first batch: per-word tokenization is exact?

    def is_content_token(self, token_id: int) -> bool:
        """False for special tokens and pieces that decode to whitespace only."""
        flag = self._is_content.get(token_id)
        if flag is None:
            flag = token_id not in self._special and self.tokenizer.decode([token_id]).strip() != ""
            self._is_content[token_id] = flag
        return flag

    def token_ids(self, text: str) -> list[int]:
        """Unique content token ids of ``text`` in first-seen order (empty if none)."""
        return self._ids_batch([text])[0]

    def _ids_batch(self, texts: list[str]) -> list[list[int]]:
        if self._per_word is None:
            self._per_word = self._per_word_is_exact(texts[:256])
        return self._ids_by_word(texts) if self._per_word else self._ids_whole(texts)

    def _ids_whole(self, texts: list[str]) -> list[list[int]]:
        """Reference path: tokenize each cleaned text as a whole."""
        cleaned = [clean_text(t) for t in texts]
        enc = self.tokenizer(cleaned, add_special_tokens=False, truncation=True, max_length=self.max_length)
        return [list(dict.fromkeys(i for i in ids if self.is_content_token(i))) for ids in enc["input_ids"]]

    def _fill(self, cache: dict, words: set[str], prefix: str) -> None:
        """Tokenize the not-yet-seen ``words`` (with ``prefix``) in one batched call; cache (content ids, count)."""
        missing = [w for w in words if w not in cache]
        if missing:
            strings = [prefix + w for w in missing]
            backend = getattr(self.tokenizer, "backend_tokenizer", None)  # fast tokenizers: skip the Python wrapper
            if backend is not None:
                backend.no_truncation()  # the wrapper sets these per call; a left-over setting must not cut words
                backend.no_padding()
                enc = [e.ids for e in backend.encode_batch_fast(strings, add_special_tokens=False)]
            else:
                enc = self.tokenizer(strings, add_special_tokens=False)["input_ids"]
            for word, ids in zip(missing, enc):
                cache[word] = (tuple(i for i in ids if self.is_content_token(i)), len(ids))

    def _ids_by_word(self, texts: list[str]) -> list[list[int]]:
        """Fast path: a cleaned text is words joined by single spaces, and the tokenizer's pre-tokenizer
        splits at spaces, so a text's tokens are its words' tokens in order (the first word without a
        leading space); each distinct word is tokenized once. Used only when verified equal to the
        whole-text path on the data itself."""
        stop, limit = self.stopwords, self.max_length
        first_cache, rest_cache = self._first_word_cache, self._word_cache
        word_lists = [[w for w in _NON_WORD.sub(" ", t).split() if w.lower() not in stop] for t in texts]
        self._fill(first_cache, {ws[0] for ws in word_lists if ws}, "")
        self._fill(rest_cache, {w for ws in word_lists for w in ws[1:]}, " ")
        out = []
        for words in word_lists:
            if not words:
                out.append([])
                continue
            entries = [first_cache[words[0]], *map(rest_cache.__getitem__, words[1:])]
            if sum(n for _, n in entries) <= limit:
                out.append(list(dict.fromkeys(chain.from_iterable(ids for ids, _ in entries))))
                continue
            seen: dict[int, None] = {}  # the whole-text path truncates at max_length tokens
            used = 0
            for i, (ids, n) in enumerate(entries):
                if used + n > limit:
                    full = self.tokenizer(words[i] if i == 0 else " " + words[i], add_special_tokens=False)["input_ids"]
                    seen.update(dict.fromkeys(t for t in full[: limit - used] if self.is_content_token(t)))
                    break
                used += n
                seen.update(dict.fromkeys(ids))
            out.append(list(seen))
        return out

    def _per_word_is_exact(self, sample: list[str]) -> bool:
        probe = sample + ["Hello world 123 don't stop-words, ÉCOLE naïve 東京 emoji🙂 x"]
        return self._ids_by_word(probe) == self._ids_whole(probe)

    def fingerprint(self) -> dict:
        vocab = self.tokenizer.get_vocab()
        digest = hashlib.sha256(repr(sorted(vocab.items())).encode()).hexdigest()[:16]
        return {"kind": "data_driven", "tokenizer": digest, "max_length": self.max_length, "weighting": self.weighting}

    def build(
        self, texts: list[str], batch_size: int = 4096, show_progress_bar: bool = False, num_proc: int = 1
    ) -> tuple[SparseTargets, BuildReport]:
        """Targets for every text that has content tokens; the report counts skipped ones.

        ``num_proc > 1`` splits the texts into that many contiguous shards built in forked worker
        processes (for large corpora; the result is identical to ``num_proc=1``).
        """
        if num_proc > 1 and len(texts) >= 2 * batch_size:
            lengths, flat = self._build_parallel(texts, batch_size, num_proc, show_progress_bar)
        else:
            lengths, flat = _ids_to_arrays(
                ids
                for start in progress_bar(
                    range(0, len(texts), batch_size), desc="targets", disable=not show_progress_bar
                )
                for ids in self._ids_batch(texts[start : start + batch_size])
            )
        keep = lengths > 0
        indptr = np.zeros(int(keep.sum()) + 1, dtype=np.int64)
        np.cumsum(lengths[keep], out=indptr[1:])
        if self.weighting == "idf":
            weights = idf_weights(flat, lengths[keep], len(texts))
        else:
            weights = np.repeat((1.0 / lengths[keep]).astype(np.float32), lengths[keep])
        index = np.flatnonzero(keep).astype(np.int64)
        targets = SparseTargets(indptr, flat, weights, index, self.fingerprint())
        return targets, BuildReport(len(texts), len(index), len(texts) - len(index))

    def _build_parallel(self, texts, batch_size, num_proc, show_progress_bar):
        import multiprocessing as mp
        import os

        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # children each use one core
        if self._per_word is None:
            self._per_word = self._per_word_is_exact(texts[:256])
        shards = np.array_split(np.arange(len(texts)), num_proc)
        global _WORKER_STATE
        _WORKER_STATE = (self, texts, batch_size)
        try:
            with mp.get_context("fork").Pool(num_proc) as pool:
                parts = list(
                    progress_bar(
                        pool.imap(_build_shard, [(int(s[0]), int(s[-1]) + 1) for s in shards if len(s)]),
                        total=num_proc,
                        desc="targets",
                        disable=not show_progress_bar,
                    )
                )
        finally:
            _WORKER_STATE = None
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


_WORKER_STATE = None  # (builder, texts, batch_size), inherited by forked workers


def _build_shard(bounds: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    builder, texts, batch_size = _WORKER_STATE
    lo, hi = bounds
    return _ids_to_arrays(
        ids
        for start in range(lo, hi, batch_size)
        for ids in builder._ids_batch(texts[start : min(start + batch_size, hi)])
    )


def idf_weights(flat: np.ndarray, lengths: np.ndarray, n_texts: int) -> np.ndarray:
    """Per-entry target weights ∝ smoothed IDF (``ln((1 + N) / (1 + df)) + 1``), each text's weights summing to 1.
    ``flat``: every text's unique ids concatenated (so a count over it is the document frequency)."""
    df = np.bincount(flat, minlength=int(flat.max(initial=0)) + 1)
    idf = (np.log((1.0 + n_texts) / (1.0 + df[flat])) + 1.0).astype(np.float64)
    owner = np.repeat(np.arange(len(lengths)), lengths)
    totals = np.bincount(owner, weights=idf, minlength=len(lengths))
    return (idf / totals[owner]).astype(np.float32)


def _ids_to_arrays(id_lists) -> tuple[np.ndarray, np.ndarray]:
    """(per-text lengths, all ids concatenated) from an iterable of id lists."""
    lengths: list[int] = []
    flat: list[int] = []
    for ids in id_lists:
        lengths.append(len(ids))
        flat.extend(ids)
    return np.asarray(lengths, dtype=np.int64), np.asarray(flat, dtype=np.int32)
