"""The text front-end: normalisation, G2P per language and the symbol tables."""

from ttsprep.stages.step3_text.g2p import PUNCTUATION, inventory, phonemize, phonemize_batch
from ttsprep.stages.step3_text.normalize import RULES, base_language, normalize_text
from ttsprep.stages.step3_text.vocab import (SPECIAL_TOKENS, build_language_map, build_speaker_map, build_vocab, encode,
                                             symbol, write_table)

__all__ = [
    "PUNCTUATION", "RULES", "SPECIAL_TOKENS", "base_language", "build_language_map", "build_speaker_map",
    "build_vocab", "encode", "inventory", "normalize_text", "phonemize", "phonemize_batch", "symbol",
    "write_table",
]
