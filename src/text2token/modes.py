"""The names of the pooling and attention settings (torch-free, so configs validate without loading torch)."""

POOLING_MODES = ("mean", "last", "weighted_mean")
ATTENTION_MODES = ("causal", "bidirectional")
