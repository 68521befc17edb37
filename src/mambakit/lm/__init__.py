"""mambakit.lm: codec-token music language model (MusicGen-style patterns, any SSM backbone).

Pieces, each usable alone::

    codecs    Codec protocol, DAC / EnCodec wrappers, load_codec("dac" | "encodec" | dir | hub id)
    patterns  delay / parallel / flat codebook patterns with exact inverses
    store     tokenize_folder (resumable, sharded) and TokenDataset (random crops)
    model     MusicLMConfig, MusicLM, parameter-matched preset(backbone, scale)
    generate  cached sampling (MusicLM.generate) and MusicGenerator (audio in / out)
    training  train_lm with the shared Trainer (evaluation: mambakit.eval.lm)
    probes    synthetic local-vs-recall probes (decode speed: mambakit.bench.lm)

Heavy optional pieces (codecs via transformers) are imported lazily.
"""

from .model import MusicLM, MusicLMConfig, count_parameters, preset
from .patterns import PATTERNS, CodebookPattern, get_pattern

__all__ = [
    "PATTERNS",
    "CodebookPattern",
    "MusicGenerator",
    "MusicLM",
    "MusicLMConfig",
    "count_parameters",
    "get_pattern",
    "load_codec",
    "preset",
]


def __getattr__(name: str):
    # lazily: generate pulls in nothing heavy, but codecs imports transformers on use
    if name == "MusicGenerator":
        from .generate import MusicGenerator

        return MusicGenerator
    if name == "load_codec":
        from .codecs import load_codec

        return load_codec
    raise AttributeError(f"module 'mambakit.lm' has no attribute {name!r}")
