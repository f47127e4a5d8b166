"""embed-minilm against sentence-transformers' own output (recorded in data/)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from engines import run_checked

REFERENCE = json.loads((Path(__file__).parent / "data" / "minilm_reference.json").read_text())


def test_tokenizer_matches_hugging_face_tokenizers(engine_named):
    engine = engine_named("embed-minilm")
    engine.prepare()
    for case in REFERENCE["token_ids"]:
        ids, truncated = engine._tokenizer.encode(case["text"], 10_000)
        assert ids == case["ids"], case["text"]
        assert not truncated


def test_embeddings_match_sentence_transformers(engine_named):
    engine = engine_named("embed-minilm")
    for case in REFERENCE["embeddings"]:
        out = json.loads(run_checked(engine, case["text"].encode()))
        assert out["dim"] == 384 and out["scale"] == 10_000 and out["model"] == "all-MiniLM-L6-v2"
        ours = [v / out["scale"] for v in out["embedding"]]
        # quantisation step 1e-4 (error <= 5e-5) + float32 noise of the reference (~1e-7)
        assert max(abs(a - b) for a, b in zip(ours, case["embedding"], strict=True)) < 6e-5
        assert abs(math.fsum(v * v for v in ours) - 1.0) < 1e-3


def test_similar_sentences_are_closer(engine_named):
    engine = engine_named("embed-minilm")

    def vec(text: str) -> list[int]:
        return json.loads(run_checked(engine, text.encode()))["embedding"]

    def cos(a: list[int], b: list[int]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True)) / 1e8

    guitar, music, weather = (
        vec("A man is playing a guitar."),
        vec("Someone plays an instrument."),
        vec("It will rain in Paris tomorrow."),
    )
    assert cos(guitar, music) > cos(guitar, weather) + 0.2


def test_long_input_is_truncated_to_256_tokens(engine_named):
    engine = engine_named("embed-minilm")
    out = json.loads(run_checked(engine, b"hello " * 1000))
    assert out["tokens"] == 256 and out["truncated"] is True
