"""Training objectives."""

from .token_kl import dense_kl_loss, sparse_kl_loss

__all__ = ["dense_kl_loss", "sparse_kl_loss"]
