"""The sentiment engine: VADER scores, canonical output."""

from __future__ import annotations

import json

from engines import run_checked


def test_known_scores(engine_named):
    engine = engine_named("sentiment")
    out = run_checked(engine, b"The food was great and the staff were lovely!")
    assert out == b'{"compound":0.8478,"label":"positive","neg":0.0000,"neu":0.4610,"pos":0.5390}'
    worst = json.loads(run_checked(engine, b"This is terrible, awful, the worst."))
    assert worst["label"] == "negative" and worst["compound"] < -0.5
    neutral = json.loads(run_checked(engine, b"The meeting is at 10 am."))
    assert neutral["label"] == "neutral"


def test_negation_and_emoji(engine_named):
    engine = engine_named("sentiment")
    good = json.loads(run_checked(engine, b"The movie was good"))
    not_good = json.loads(run_checked(engine, b"The movie was not good"))
    assert good["compound"] > 0 > not_good["compound"]
    smile = json.loads(run_checked(engine, "I am here \U0001f600".encode()))
    assert smile["compound"] > 0
