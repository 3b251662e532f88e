"""Training objectives: Text2Token's KL to token targets, and the SimCSE baseline."""

from .simcse import set_attention_dropout, simcse_loss
from .token_kl import dense_kl_loss, sparse_kl_loss

__all__ = ["dense_kl_loss", "set_attention_dropout", "simcse_loss", "sparse_kl_loss"]
