"""Training: config, stages, the loop, checkpoints. Imported lazily: ``import text2token.training`` does
not load torch until ``train`` is used."""

from .config import RunConfig, load_config


def __getattr__(name):
    if name == "train":
        from .trainer import train

        return train
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["RunConfig", "load_config", "train"]
