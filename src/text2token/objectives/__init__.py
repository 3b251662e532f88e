"""Training objectives."""

from .token_kl import sparse_kl_loss

__all__ = ["sparse_kl_loss"]
