"""taskcomp: task-aware image compression with a variable-rate SFT codec."""

from .codec import create_codec, lambda_of_q, list_codecs

__version__ = "0.1.0"
__all__ = ["create_codec", "lambda_of_q", "list_codecs", "__version__"]
