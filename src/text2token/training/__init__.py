"""Training: config, the accelerate loop, checkpoints."""

from .config import RunConfig, load_config
from .trainer import train

__all__ = ["RunConfig", "load_config", "train"]
