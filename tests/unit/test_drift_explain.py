"""Explanation by topic: the planted new topic comes out on top, in its own words."""

from __future__ import annotations

import json

import numpy as np
import pytest

from modelwarden.drift.explain import explain_drift
from modelwarden.drift.synthetic import topic_centres, topic_mixture
from modelwarden.errors import DimensionError, InputError

TOPIC_WORDS = [
    ["conveyor", "lubrication", "grease", "bearing"],
    ["lockout", "tagout", "isolation", "padlock"],
    ["forklift", "pallet", "warehouse", "aisle"],
    ["welding", "torch", "argon", "bead"],
    ["boiler", "pressure", "steam", "valve"],
    ["calibration", "gauge", "micrometer", "tolerance"],
    ["ransomware", "phishing", "password", "firewall"],  # only in the current window
]
NEW_TOPIC = 6


def _texts(topics: np.ndarray, rng: np.random.Generator) -> list[str]:
    out = []
    for t in topics:
        words = rng.choice(TOPIC_WORDS[t], size=3, replace=False)
        out.append(
            f"What is the procedure for the {words[0]} and the {words[1]} near the "
            f"{words[2]} on line {int(rng.integers(1, 9))}?"
        )
    return out


@pytest.fixture(scope="module")
def planted():
    centres = topic_centres(7, 64, seed=5)
    rng = np.random.default_rng(5)
    old = np.r_[np.full(6, 1 / 6), 0.0]
    new = np.r_[np.full(6, 0.8 / 6), 0.2]
    xb, tb = topic_mixture(centres, old, 600, seed=rng)
    xc, tc = topic_mixture(centres, new, 300, seed=rng)
    return {
        "xb": xb,
        "xc": xc,
        "tb": tb,
        "tc": tc,
        "texts_b": _texts(tb, rng),
        "texts_c": _texts(tc, rng),
    }


def test_the_planted_topic_is_the_top_new_cluster(planted):
    exp = explain_drift(
        planted["xb"],
        planted["xc"],
        texts_current=planted["texts_c"],
        texts_baseline=planted["texts_b"],
    )
    top = exp.clusters[0]
    assert top.status == "new"
    assert [c.cluster for c in exp.emerging] == [top.cluster]
    assert top.share_baseline == 0.0
    assert top.share_current == pytest.approx(np.mean(planted["tc"] == NEW_TOPIC), abs=0.01)
    assert top.change == pytest.approx(top.share_current - top.share_baseline)
    assert len(top.representatives) == 3
    for ex in top.representatives:
        assert ex.window == "current"
        assert planted["tc"][ex.index] == NEW_TOPIC
        assert ex.text == planted["texts_c"][ex.index]
        assert any(w in ex.text for w in TOPIC_WORDS[NEW_TOPIC])
    assert set(top.key_terms[:4]) == set(TOPIC_WORDS[NEW_TOPIC])
    # The other topics lost share evenly; none of them is reported as new.
    assert all(c.status in ("stable", "shrank") for c in exp.clusters[1:])


def test_the_most_novel_prompts_come_from_the_new_topic(planted):
    exp = explain_drift(planted["xb"], planted["xc"], texts_current=planted["texts_c"])
    assert len(exp.novel) == 5
    assert all(planted["tc"][p.index] == NEW_TOPIC for p in exp.novel)
    assert all(p.nn_distance > exp.median_nn_distance for p in exp.novel)
    distances = [p.nn_distance for p in exp.novel]
    assert distances == sorted(distances, reverse=True)


def test_explanation_is_json_serialisable_and_works_without_texts(planted):
    exp = explain_drift(planted["xb"], planted["xc"])
    data = json.loads(json.dumps(exp.to_dict(), allow_nan=False))
    assert data["emerging"] == [exp.clusters[0].cluster]
    assert data["clusters"][0]["representatives"][0]["text"] is None
    assert data["clusters"][0]["key_terms"] == []
    assert sum(c["share_current"] for c in data["clusters"]) == pytest.approx(1.0)
    assert sum(c["share_baseline"] for c in data["clusters"]) == pytest.approx(1.0)


def test_no_drift_means_no_emerging_cluster():
    centres = topic_centres(6, 64, seed=8)
    rng = np.random.default_rng(8)
    w = np.full(6, 1 / 6)
    xb, _ = topic_mixture(centres, w, 600, seed=rng)
    xc, _ = topic_mixture(centres, w, 300, seed=rng)
    exp = explain_drift(xb, xc)
    assert exp.emerging == []


def test_explain_validates_its_inputs(planted):
    with pytest.raises(DimensionError) as err:
        explain_drift(planted["xb"], planted["xc"][:, :10])
    assert err.value.field == "current"
    with pytest.raises(InputError) as err:
        explain_drift(planted["xb"], planted["xc"], texts_current=["one text"])
    assert err.value.field == "texts_current"
    with pytest.raises(InputError) as err:
        explain_drift(np.empty((0, 64)), planted["xc"])
    assert err.value.field == "baseline"
