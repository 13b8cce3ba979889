"""The SFT codec: model, configs, registry, checkpoints."""

from .checkpoint import CheckpointError, load_codec_checkpoint, save_codec, state_dict_hash
from .sft import QUANTIZE_MODES, SFTCodec, SFTConfig, bits_from_likelihoods, lambda_of_q, pad_to_multiple
from .zoo import CODEC_CONFIGS, DEFAULT_CODEC, create_codec, list_codecs

__all__ = [
    "SFTCodec", "SFTConfig", "QUANTIZE_MODES", "bits_from_likelihoods", "lambda_of_q", "pad_to_multiple",
    "CODEC_CONFIGS", "DEFAULT_CODEC", "create_codec", "list_codecs",
    "CheckpointError", "load_codec_checkpoint", "save_codec", "state_dict_hash",
]
