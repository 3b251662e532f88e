"""How a text becomes token ids for embedding: wrapped in the prompt template (if any), truncated so that the whole
template always fits in ``max_length`` tokens, and padded on the tokenizer's side. One implementation, used by
:class:`text2token.model.Text2TokenModel` and by the exported runtimes (:mod:`text2token.onnx_export`), so a text
gets the same ids everywhere."""

from __future__ import annotations

import numpy as np

from .errors import Text2TokenError


def template_overhead(tokenizer, template: str) -> int:
    """Tokens ``template`` (with special tokens) adds around the text."""
    return len(tokenizer(template.replace("{text}", ""))["input_ids"])


def token_ids(
    tokenizer, texts: list[str], template: str | None, max_length: int, overhead: int | None = None
) -> list[list[int]]:
    """Token ids of ``texts`` in ``template``, at most ``max_length`` each, unpadded (``overhead``: the template's
    :func:`template_overhead`, if the caller caches it). A text that gives no tokens at all (an empty string
    without a template or BOS) has no embedding: that is an error naming its position, not a zero vector."""
    ids = _token_ids(tokenizer, texts, template, max_length, overhead)
    empty = [i for i, x in enumerate(ids) if not x]
    if empty:
        shown = ", ".join(map(str, empty[:5])) + (", ..." if len(empty) > 5 else "")
        raise Text2TokenError(
            f"{len(empty)} text(s) give no tokens (position(s) {shown} of {len(ids)}): "
            "empty texts have no embedding; drop them or use a template"
        )
    return ids


def _token_ids(tok, texts, template, max_length, overhead):
    if template is None:
        return tok(list(texts), truncation=True, max_length=max_length)["input_ids"]
    if overhead is None:
        overhead = template_overhead(tok, template)
    budget = max(1, max_length - overhead)
    texts = list(texts)
    for _ in range(4):
        lengths = [len(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"]]
        full = [template.replace("{text}", t) for t in texts]
        enc = tok(full)["input_ids"]
        over = [i for i, ids in enumerate(enc) if len(ids) > max_length]
        if not over:
            break
        for i in over:
            excess = len(enc[i]) - max_length
            keep = max(1, min(budget, lengths[i] - excess))
            ids = tok(texts[i], add_special_tokens=False)["input_ids"][:keep]
            texts[i] = tok.decode(ids)
    full = [template.replace("{text}", t) for t in texts]
    return tok(full, truncation=True, max_length=max_length)["input_ids"]


def pad(tokenizer, ids: list[list[int]], multiple_of: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``(input_ids, attention_mask)`` int64 arrays: ``ids`` padded on the tokenizer's padding side to the longest
    list rounded up to ``multiple_of`` tokens."""
    width = -(-max(len(x) for x in ids) // multiple_of) * multiple_of
    input_ids = np.full((len(ids), width), tokenizer.pad_token_id, dtype=np.int64)
    mask = np.zeros((len(ids), width), dtype=np.int64)
    left = tokenizer.padding_side == "left"
    for row, x in enumerate(ids):
        span = slice(width - len(x), width) if left else slice(0, len(x))
        input_ids[row, span] = x
        mask[row, span] = 1
    return input_ids, mask


def length_sorted_batches(ids: list[list[int]], batch_size: int):
    """Row numbers of ``ids`` in batches of near-equal token length (longest first): little padding."""
    order = np.argsort([-len(x) for x in ids], kind="stable")
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]
