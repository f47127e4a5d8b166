"""``sentiment``: VADER (Hutto & Gilbert 2014) lexicon and rule based sentiment.

The lexicon ships in the ``vaderSentiment`` registry package and is read from its install
folder (no network); its code and both lexicon files are measured. VADER is pure Python
float arithmetic, so scores are the same on every machine; they are written with exactly
four decimals through :func:`engines.canonical.canonical_json`.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Any

from engines.abc import EngineAPI
from engines.canonical import Fixed, canonical_json, decode_text
from engines.errors import EngineError, EngineReason

#: compound score thresholds of the VADER authors' recommended labelling
POSITIVE_AT = 0.05
NEGATIVE_AT = -0.05


class SentimentEngine(EngineAPI):
    """VADER sentiment of UTF-8 text; output is canonical JSON (see the manifest)."""

    MANIFEST_PATH = Path(__file__).with_name("manifest.toml")
    EXAMPLES = (
        b"The food was great and the staff were lovely!",
        b"This is the worst service I have ever had. Never again :(",
        b"The meeting is at 10 am.",
        "Caf\u00e9 au lait \U0001f600 was NOT bad at all".encode(),
    )
    BAD_INPUTS = (b"", b"   \n\t", b"\xff\xfe not utf-8", b"abc\xc3")

    def __init__(self) -> None:
        self._analyzer: Any = None
        self._lock = threading.Lock()
        super().__init__()

    def check_available(self) -> None:
        if importlib.util.find_spec("vaderSentiment") is None:
            raise EngineError(
                EngineReason.UNAVAILABLE, "sentiment: the vaderSentiment package is missing"
            )
        super().check_available()

    def prepare(self) -> None:
        with self._lock:
            if self._analyzer is None:
                from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

                self._analyzer = SentimentIntensityAnalyzer()

    def run(self, data: bytes) -> bytes:
        text = decode_text(data, engine=self.name)
        if not text.strip():
            raise EngineError(EngineReason.BAD_INPUT, "sentiment: input has no text")
        self.prepare()
        scores = self._analyzer.polarity_scores(text)
        compound = float(scores["compound"])
        if compound >= POSITIVE_AT:
            label = "positive"
        elif compound <= NEGATIVE_AT:
            label = "negative"
        else:
            label = "neutral"
        return canonical_json(
            {
                "compound": Fixed(compound, 4),
                "label": label,
                "neg": Fixed(float(scores["neg"]), 4),
                "neu": Fixed(float(scores["neu"]), 4),
                "pos": Fixed(float(scores["pos"]), 4),
            }
        )
