"""Names and sizes of settings shared by several modules, defined once (torch-free, so configs and the CLI's
parser validate without loading torch).

Each setting with a fixed set of values is a :class:`Choice` (a ``str`` enum: ``Pooling.MEAN == "mean"``, and a
member is used wherever its string is). CLI choices, config validation and the configuration reference read the
values from here."""

from __future__ import annotations

import enum


class Choice(str, enum.Enum):
    """A setting's allowed values; members compare and format as their string."""

    def __str__(self) -> str:
        return self.value

    @classmethod
    def values(cls) -> tuple[str, ...]:
        return tuple(m.value for m in cls)

    @classmethod
    def listed(cls) -> str:
        """``"a, b or c"``: the values for an error message."""
        v = cls.values()
        return v[0] if len(v) == 1 else f"{', '.join(v[:-1])} or {v[-1]}"

    @classmethod
    def has(cls, value) -> bool:
        return value in cls.values()

    @classmethod
    def require(cls, value, what: str, error: type[Exception] = ValueError) -> None:
        """Raise ``error("WHAT must be one of A, B, got 'VALUE'")`` unless ``value`` is one of the values."""
        if not cls.has(value):
            raise error(f"{what} must be one of {', '.join(cls.values())}, got '{value}'")


class Objective(Choice):  # the training recipe (text2token.recipes.RECIPES describes each)
    TEXT2TOKEN = "text2token"
    SIMCSE = "simcse"
    COMBINED = "combined"
    LLM2VEC = "llm2vec"


class Pooling(Choice):  # hidden states -> one vector
    MEAN = "mean"
    LAST = "last"
    WEIGHTED_MEAN = "weighted_mean"


class DType(Choice):  # --dtype: the weights' dtype (text2token.devices.dtype_from_name reads it)
    AUTO = "auto"  # bfloat16 on a GPU with native bf16, else float32 (devices.default_dtype)
    FLOAT32 = "float32"
    BFLOAT16 = "bfloat16"
    FLOAT16 = "float16"


class Attention(Choice):
    CAUSAL = "causal"
    BIDIRECTIONAL = "bidirectional"


class TargetWeighting(Choice):  # stage 1's weight over a text's content tokens (stage1.weighting)
    UNIFORM = "uniform"
    IDF = "idf"


class Stage2Targets(Choice):  # stage 2's targets: exact from the frozen model per batch, or a precomputed top-k store
    ON_THE_FLY = "on_the_fly"
    PRECOMPUTED = "precomputed"


class InputErrors(Choice):  # invalid UTF-8 in an input file: an error naming the line, or U+FFFD (counted)
    STRICT = "strict"
    REPLACE = "replace"


class MixedPrecision(Choice):  # training.mixed_precision (auto: the trainer picks for the hardware)
    AUTO = "auto"
    NO = "no"
    BF16 = "bf16"
    FP16 = "fp16"


class Scheduler(Choice):  # learning-rate schedule after warm-up
    CONSTANT = "constant"
    LINEAR = "linear"
    COSINE = "cosine"


class SparseWeighting(Choice):  # a sparse index's token weights: the prior ratio (as stage 2's targets) or p itself
    PRIOR_RATIO = "prior_ratio"
    PROB = "prob"


class Fusion(Choice):  # hybrid search: how dense and sparse scores are combined
    RRF = "rrf"
    MINMAX = "minmax"
    RAW = "raw"


class AnnDtype(Choice):
    """Precision of the vectors in the ANN graph (index --ann-dtype): half floats, int8 (usearch scales unit vectors
    by 127), or one bit per dimension (the sign; Hamming distance). Search rescores graph candidates by the float
    vectors."""

    F16 = "f16"
    I8 = "i8"
    B1 = "b1"


class TaskType(Choice):  # the evaluation task types the bundled suites hold (mteb's names)
    CLASSIFICATION = "Classification"
    CLUSTERING = "Clustering"
    PAIR_CLASSIFICATION = "PairClassification"
    RERANKING = "Reranking"
    RETRIEVAL = "Retrieval"
    STS = "STS"
    WORD_SIMILARITY = "WordSimilarity"


# Texts read (and, in encode, tokenized and length-sorted) at a time by streaming encode/index and by
# Text2TokenModel.encode: memory stays flat for any corpus size.
CHUNK_SIZE = 16384
PASSAGE_OVERLAP = 32  # index --passages: tokens neighbouring passages may share (at most a quarter of a passage)

# text2token serve: bounds on one request (the model truncates each text to its max_length tokens anyway), and the
# environment variable an API key may come from.
SERVE_HOST = "127.0.0.1"
SERVE_PORT = 8000
SERVE_MAX_TEXTS = 256
SERVE_MAX_CHARS = 32_768
SERVE_API_KEY_ENV = "TEXT2TOKEN_API_KEY"
# The isotropy correction (text2token.isotropy): a fit on fewer texts is refused; the defaults that training and
# `text2token postprocess` fit with, chosen on the dev suite (docs/studies/isotropy.md).
ISOTROPY_MIN_FIT_TEXTS = 100
ISOTROPY_DIRECTIONS = 0  # the mean only: the one setting that helped both the trained and the untrained SmolLM2
ISOTROPY_FIT_TEXTS = 2000
