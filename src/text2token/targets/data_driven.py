"""Stage-1 targets: a uniform distribution over the text's own meaningful tokens.

1. replace each run of non-word characters (punctuation, symbols, underscores) by a space;
2. drop English stopwords (scikit-learn's list), case-insensitively, word by word;
3. tokenize the cleaned text with the backbone tokenizer (at most ``max_length`` tokens);
4. drop special tokens and bare-whitespace pieces, judged by the tokenizer itself;
5. target = uniform over the unique remaining ids (every sub-word piece kept).

Texts with no token left get no target; they are counted in ``skipped`` and not trained on.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import numpy as np
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS
from tqdm.auto import tqdm

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

    def __init__(self, tokenizer, max_length: int = 128):
        self.tokenizer = tokenizer
        self.max_length = max_length
        self._special = set(tokenizer.all_special_ids)
        self._is_content: dict[int, bool] = {}

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
        cleaned = [clean_text(t) for t in texts]
        enc = self.tokenizer(cleaned, add_special_tokens=False, truncation=True, max_length=self.max_length)
        out = []
        for ids in enc["input_ids"]:
            seen = dict.fromkeys(i for i in ids if self.is_content_token(i))
            out.append(list(seen))
        return out

    def fingerprint(self) -> dict:
        vocab = self.tokenizer.get_vocab()
        digest = hashlib.sha256(repr(sorted(vocab.items())).encode()).hexdigest()[:16]
        return {"kind": "data_driven", "tokenizer": digest, "max_length": self.max_length, "weighting": "uniform"}

    def build(self, texts: list[str], batch_size: int = 1024, show_progress_bar: bool = False) -> tuple[SparseTargets, BuildReport]:
        """Targets for every text that has content tokens; the report counts skipped ones."""
        id_lists, weight_lists, index = [], [], []
        for start in tqdm(range(0, len(texts), batch_size), desc="targets", disable=not show_progress_bar):
            for offset, ids in enumerate(self._ids_batch(texts[start : start + batch_size])):
                if ids:
                    id_lists.append(ids)
                    weight_lists.append(np.full(len(ids), 1.0 / len(ids), dtype=np.float32))
                    index.append(start + offset)
        targets = SparseTargets.from_lists(id_lists, weight_lists, index, self.fingerprint())
        return targets, BuildReport(len(texts), len(index), len(texts) - len(index))
