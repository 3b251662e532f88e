"""Names and sizes of settings shared by several modules, defined once (torch-free, so configs and the CLI's
parser validate without loading torch)."""

POOLING_MODES = ("mean", "last", "weighted_mean")
ATTENTION_MODES = ("causal", "bidirectional")
TARGET_WEIGHTINGS = ("uniform", "idf")  # stage 1's weight over a text's content tokens (stage1.weighting)

# Texts read (and, in encode, tokenized and length-sorted) at a time by streaming encode/index and by
# Text2TokenModel.encode: memory stays flat for any corpus size.
CHUNK_SIZE = 16384

# Precision of the vectors in the ANN graph (index --ann-dtype): half floats, int8 (usearch scales unit vectors by
# 127), or one bit per dimension (the sign; Hamming distance). Search rescores graph candidates by the float vectors.
ANN_DTYPES = ("f16", "i8", "b1")

# text2token serve: bounds on one request (the model truncates each text to its max_length tokens anyway), and the
# environment variable an API key may come from.
SERVE_HOST = "127.0.0.1"
SERVE_PORT = 8000
SERVE_MAX_TEXTS = 256
SERVE_MAX_CHARS = 32_768
SERVE_API_KEY_ENV = "TEXT2TOKEN_API_KEY"
