"""Documents longer than the model's window, indexed as passages.

A model reads at most ``max_length`` tokens (template included): a longer document's vectors hold its beginning
only. ``index --passages`` splits each document into passages that fit the window — by the model's own tokenizer,
on the largest semantic unit that fits (paragraph, sentence, word), with up to ``overlap`` tokens shared by
neighbouring passages — and indexes every passage as a row; search ranks documents by their best passage and shows
that passage. The splitting is semantic-text-splitter's (a maintained Rust splitter; here counting tokens with a
callback into the model's tokenizer, so a passage fits exactly as :meth:`Text2TokenModel.tokenize` counts).

Each row of ``docs.jsonl`` then carries ``id`` (the document's), ``passage`` (0, 1, … within it), ``start`` (its
character offset in the document) and ``text`` (the passage).
"""

from __future__ import annotations

from ..errors import Text2TokenError
from ..modes import CHUNK_SIZE
from ..modes import PASSAGE_OVERLAP as DEFAULT_OVERLAP  # so that a sentence cut at a border is whole in one passage

PASSAGE_POOL = 8  # with an ANN graph, a passage index searches this many times ``top`` rows to find ``top`` documents


class PassageSplitter:
    """Splits a text into passages of at most the model's text budget (``max_length`` minus the template)."""

    def __init__(self, model, overlap: int | None = None):
        """``overlap``: tokens neighbouring passages may share; None: ``DEFAULT_OVERLAP``, at most a quarter of
        a passage."""
        from semantic_text_splitter import TextSplitter

        self.tokens = model.text_budget()
        if overlap is None:
            overlap = min(DEFAULT_OVERLAP, self.tokens // 4)
        if not 0 <= overlap < self.tokens:
            raise Text2TokenError(
                f"--passage-overlap must be >= 0 and below the {self.tokens} tokens a passage holds, got {overlap}"
            )
        self.overlap = overlap
        tokenizer = model.tokenizer

        def count(text: str) -> int:
            return len(tokenizer(text, add_special_tokens=False)["input_ids"])

        self._splitter = TextSplitter.from_callback(count, self.tokens, overlap)

    def split(self, text: str) -> list[tuple[int, str]]:
        """``(character offset, passage)`` pairs covering ``text``; a text that fits is one passage, itself."""
        parts = self._splitter.chunk_indices(text)
        return parts if parts else [(0, text)]

    def settings(self) -> dict:
        return {"tokens": self.tokens, "overlap": self.overlap, "splitter": "semantic-text-splitter"}


class PassageSource:
    """A :class:`~text2token.resumable.Source` read as passages: one row per passage (counted by one splitting pass
    before any model work, so the index knows its size), streamed in chunks like the source itself. Row ids are
    ``(document id, passage number, character offset)``; :meth:`record` makes each row's ``docs.jsonl`` object."""

    def __init__(self, source, splitter: PassageSplitter, show_progress_bar: bool = False):
        from ..progress import progress_bar

        self.source, self.splitter = source, splitter
        self.path, self.stdin, self.counts = source.path, source.stdin, source.counts
        self.documents, rows, split = source.rows, 0, 0
        bar = progress_bar(total=source.rows, desc="split into passages", unit="doc", disable=not show_progress_bar)
        for _, _, texts in source.chunks(0, CHUNK_SIZE):
            for text in texts:
                n = len(splitter.split(text))
                rows, split = rows + n, split + (n > 1)
            bar.update(len(texts))
        bar.close()
        self.rows, self.documents_split = rows, split

    def check_unique_ids(self) -> None:
        self.source.check_unique_ids()

    def fingerprint(self, model, **settings) -> dict | None:
        return self.source.fingerprint(model, passages=self.splitter.settings(), **settings)

    def chunks(self, start: int, size: int):
        """``(first row, row ids, passages)`` for rows ``start …``, ``size`` rows at a time, aligned to multiples of
        ``size`` like :meth:`Source.chunks` (a resumed build cuts the same chunks)."""
        ids, texts, first, row = [], [], start, 0
        for _, doc_ids, docs in self.source.chunks(0, CHUNK_SIZE):
            for doc, text in zip(doc_ids, docs):
                for k, (offset, passage) in enumerate(self.splitter.split(text)):
                    if row >= start:
                        ids.append((doc, k, offset))
                        texts.append(passage)
                        if len(texts) == size:
                            yield first, ids, texts
                            first, ids, texts = row + 1, [], []
                    row += 1
        if texts:
            yield first, ids, texts

    @staticmethod
    def record(row_id, text: str) -> dict:
        doc, k, offset = row_id
        return {"id": doc, "passage": k, "start": offset, "text": text}
