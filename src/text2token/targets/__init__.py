"""Target token distributions: what each text's embedding should "mean" in vocabulary space."""

from .data_driven import DataDrivenTargetBuilder
from .store import SparseTargets

__all__ = ["DataDrivenTargetBuilder", "SparseTargets"]
