"""The ``sentiment`` engine: VADER sentiment scores for English text."""

from engines.sentiment.engine import SentimentEngine

__all__ = ["SentimentEngine"]
