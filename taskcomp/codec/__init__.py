"""The SFT codec: model, configs, registry, checkpoints."""

import warnings

# compressai 1.2.8 imports torch_geometric, which calls the deprecated torch.jit.script at import time;
# without this every taskcomp command would start by printing a FutureWarning that is not the user's concern.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)
    import compressai  # noqa: F401

from .checkpoint import CheckpointError, load_codec_checkpoint, save_codec, state_dict_hash
from .sft import QUANTIZE_MODES, SFTCodec, SFTConfig, bits_from_likelihoods, lambda_of_q, pad_to_multiple
from .widen import widen_codec
from .zoo import CODEC_CONFIGS, DEFAULT_CODEC, create_codec, list_codecs

__all__ = [
    "SFTCodec", "SFTConfig", "QUANTIZE_MODES", "bits_from_likelihoods", "lambda_of_q", "pad_to_multiple",
    "CODEC_CONFIGS", "DEFAULT_CODEC", "create_codec", "list_codecs",
    "CheckpointError", "load_codec_checkpoint", "save_codec", "state_dict_hash", "widen_codec",
]
