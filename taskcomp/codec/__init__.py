"""The SFT codec: model (``sft.py``, ``sft_context.py``), registry of codecs by name and their shipped weights
(``registry.py``), factory (``zoo.py``), checkpoints (``checkpoint.py``). Knows no task, objective or map optimiser."""

import warnings

# compressai 1.2.8 imports torch_geometric, which calls the deprecated torch.jit.script at import time;
# without this every taskcomp command would start by printing a FutureWarning that is not the user's concern.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)
    import compressai  # noqa: F401

from .checkpoint import CheckpointError, load_codec_checkpoint, save_codec, state_dict_hash
from .registry import RETIRED_WEIGHTS, resolve_name, shipped_checkpoint
from .sft import QUANTIZE_MODES, SFTCodec, SFTConfig, bits_from_likelihoods, lambda_of_q, pad_to_multiple
from .widen import widen_codec
from .zoo import CODEC_CONFIGS, DEFAULT_CODEC, create_codec, list_codecs

__all__ = [
    "SFTCodec",
    "SFTConfig",
    "QUANTIZE_MODES",
    "bits_from_likelihoods",
    "lambda_of_q",
    "pad_to_multiple",
    "CODEC_CONFIGS",
    "DEFAULT_CODEC",
    "create_codec",
    "list_codecs",
    "resolve_name",
    "shipped_checkpoint",
    "RETIRED_WEIGHTS",
    "CheckpointError",
    "load_codec_checkpoint",
    "save_codec",
    "state_dict_hash",
    "widen_codec",
]
