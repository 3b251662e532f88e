"""Training objectives: the seam between a stage and the loop (see :mod:`.base`)."""

from .base import Objective, ObjectiveOutput
from .combined import Combined
from .mntp import MNTP, mask_token_id
from .simcse import SimCSE, set_attention_dropout, simcse_loss
from .token_kl import TokenKL, dense_kl_loss, sparse_kl_loss, topk_hit_rate

__all__ = [
    "Combined",
    "MNTP",
    "Objective",
    "mask_token_id",
    "ObjectiveOutput",
    "SimCSE",
    "TokenKL",
    "dense_kl_loss",
    "set_attention_dropout",
    "simcse_loss",
    "sparse_kl_loss",
    "topk_hit_rate",
]
