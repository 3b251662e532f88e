"""Packed rows: several texts per row, padding-free up to a row length, each text attending only to itself.

A packed batch is ``input_ids`` (R×L), ``segment_ids`` (R×L: 1, 2, … for the texts of a row, 0 for padding at
the row's end) and ``position_ids`` (R×L: 0, 1, … restarting at every text). The attention mask is built
explicitly — block-diagonal over the segments, and lower-triangular inside each block in causal mode — because
a model's own mask building from ``position_ids`` is not reliable (transformers' bidirectional path ignores
them, so texts would see their neighbours). Pooling of packed rows is :func:`text2token.pooling.pool_segments`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class PackedRows:
    input_ids: torch.Tensor  # R×L
    segment_ids: torch.Tensor  # R×L, 0 = padding
    position_ids: torch.Tensor  # R×L
    texts: list[int]  # for each segment in row-major order, the index of its text in the packed list

    @property
    def num_tokens(self) -> int:
        return int((self.segment_ids > 0).sum())

    def to(self, device) -> PackedRows:
        return PackedRows(
            self.input_ids.to(device), self.segment_ids.to(device), self.position_ids.to(device), self.texts
        )


def pack(
    ids: list[list[int]], row_length: int, pad_id: int, pad_to: int | None = None, rows_multiple_of: int = 1
) -> PackedRows:
    """Pack token-id lists into rows of at most ``row_length`` tokens, longest first into the first row with room
    (first-fit decreasing). Rows are padded to the longest row, or to ``pad_to`` (a fixed width) if given; with
    ``rows_multiple_of``, empty rows (all padding) are added up to a multiple of it — so a step's shape is one of a
    few fixed buckets, which a compiled step needs."""
    if any(len(x) > row_length for x in ids):
        raise ValueError(f"a text of {max(len(x) for x in ids)} tokens does not fit a packed row of {row_length}")
    rows: list[list[int]] = []  # text indices per row
    room: list[int] = []
    for i in sorted(range(len(ids)), key=lambda i: -len(ids[i])):
        for r, free in enumerate(room):
            if len(ids[i]) <= free:
                rows[r].append(i)
                room[r] -= len(ids[i])
                break
        else:
            rows.append([i])
            room.append(row_length - len(ids[i]))
    width = max(row_length - free for free in room) if pad_to is None else pad_to
    height = -(-len(rows) // rows_multiple_of) * rows_multiple_of
    input_ids = torch.full((height, width), pad_id, dtype=torch.long)
    segment_ids = torch.zeros((height, width), dtype=torch.long)
    position_ids = torch.zeros((height, width), dtype=torch.long)
    order = []
    for r, members in enumerate(rows):
        start = 0
        for s, i in enumerate(members, start=1):
            n = len(ids[i])
            input_ids[r, start : start + n] = torch.tensor(ids[i], dtype=torch.long)
            segment_ids[r, start : start + n] = s
            position_ids[r, start : start + n] = torch.arange(n)
            start += n
            order.append(i)
    return PackedRows(input_ids, segment_ids, position_ids, order)


def packed_attention_mask(segment_ids: torch.Tensor, causal: bool, dtype: torch.dtype) -> torch.Tensor:
    """R×1×L×L additive mask: 0 where a query may attend to a key (same segment; and key ≤ query when causal),
    the dtype's minimum elsewhere. Padding positions attend only to themselves (so no row of the softmax is empty)."""
    same = (segment_ids.unsqueeze(2) == segment_ids.unsqueeze(1)) & (segment_ids > 0).unsqueeze(2)
    length = segment_ids.shape[1]
    eye = torch.eye(length, dtype=torch.bool, device=segment_ids.device).unsqueeze(0)
    if causal:
        same &= torch.ones(length, length, dtype=torch.bool, device=segment_ids.device).tril().unsqueeze(0)
    allowed = same | eye
    mask = torch.zeros(allowed.shape, dtype=dtype, device=segment_ids.device)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask.unsqueeze(1)
