"""text2token: turn a decoder-only LM into a text embedder by token target prediction.

The package imports lazily: ``import text2token`` and ``text2token --help`` do not load torch or
transformers; ``text2token.Text2TokenModel`` loads them on first use.
"""

import os

# Idle OpenMP threads spin only briefly (GOMP_SPINCOUNT=10000, libgomp, which torch's Linux wheels use) before they
# sleep, so two torch jobs on the same cores share them instead of spinning against each other, while a job alone
# keeps its speed (measured by benchmarks/contention.py; figures in docs/benchmarks.md). Set before torch loads
# OpenMP (torch imported before text2token keeps its own setting); a wait policy or spin count the user set is kept.
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", "10000")

from .version import __version__

__all__ = ["Text2TokenModel", "__version__"]


def __getattr__(name):
    if name == "Text2TokenModel":
        from .model import Text2TokenModel

        return Text2TokenModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + ["Text2TokenModel"])
