"""The ``embed-minilm`` engine: all-MiniLM-L6-v2 sentence embeddings (optional extra ``embed``).

Importing this package is cheap and never fails: NumPy and the model weights are looked
for when the engine is built, and their absence makes it ``UNAVAILABLE``.
"""

from engines.embed_minilm.engine import EmbedMiniLMEngine

__all__ = ["EmbedMiniLMEngine"]
