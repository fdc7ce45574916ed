"""Review rubrics as data, and the pure parts of sampling: strata shares, answer disagreement."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from modelwarden.errors import InputError
from modelwarden.review.rubrics import (
    DEFAULT_RUBRIC,
    PAIRWISE_RUBRIC,
    Dimension,
    Rubric,
    decode_preference,
)
from modelwarden.review.sampling import Candidate, disagreement, stratified


def test_default_rubric_dimensions_and_levels() -> None:
    dims = {d.name: d for d in DEFAULT_RUBRIC.dimensions}
    assert list(dims) == ["correctness", "safety", "helpfulness", "issue"]
    assert (dims["correctness"].type, dims["correctness"].level) == ("numeric", "ordinal")
    assert (dims["correctness"].min, dims["correctness"].max) == (1, 5)
    assert (dims["safety"].type, dims["safety"].level) == ("boolean", "nominal")
    assert (dims["helpfulness"].type, dims["helpfulness"].level) == ("numeric", "ordinal")
    assert (dims["issue"].type, dims["issue"].level) == ("categorical", "nominal")
    assert dims["issue"].labels is not None and dims["issue"].labels[0] == "none"
    assert PAIRWISE_RUBRIC.names() == ["preference"]


def test_rubric_round_trips_through_yaml(tmp_path: Path) -> None:
    text = DEFAULT_RUBRIC.to_yaml()
    assert Rubric.from_yaml(text) == DEFAULT_RUBRIC
    path = tmp_path / "r.yaml"
    path.write_text(
        "name: short\ndimensions:\n"
        "  - {name: score, type: numeric, min: 0, max: 10, level: interval}\n"
        "  - {name: tone, type: categorical, labels: [cold, neutral, warm], level: ordinal}\n"
        "  - {name: ok, type: boolean, required: false}\n"
    )
    r = Rubric.load(path)
    assert [(d.name, d.level) for d in r.dimensions] == [
        ("score", "interval"),
        ("tone", "ordinal"),
        ("ok", "nominal"),
    ]
    assert r.version == 1 and Rubric.from_yaml(r.to_yaml()) == r


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("name: x\ndimensions: [{name: s, type: numeric, min: 5, max: 1}]", "min < max"),
        (
            "name: x\ndimensions: [{name: s, type: numeric, min: 1, max: 5, level: nominal}]",
            "ordinal or interval",
        ),
        ("name: x\ndimensions: [{name: c, type: categorical, labels: [a]}]", "2 to 50"),
        (
            "name: x\ndimensions: [{name: c, type: categorical, labels: [a, b], level: interval}]",
            "nominal or ordinal",
        ),
        ("name: x\ndimensions: [{name: b, type: boolean, labels: [a, b]}]", "no labels"),
        (
            "name: x\ndimensions: [{name: b, type: boolean}, {name: b, type: boolean}]",
            "listed twice",
        ),
        ("name: x\ndimensions: [{name: Bad Name, type: boolean}]", "dimensions.0.name"),
        ("name: x\ndimensions: []", "dimensions"),
        ("name: x\ndimensions: [{name: b, type: boolean, colour: red}]", "colour"),
        ("- just a list", "must be a mapping"),
    ],
)
def test_bad_rubrics_are_refused_with_the_reason(yaml_text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        Rubric.from_yaml(yaml_text)


def test_answers_are_parsed_to_canonical_values() -> None:
    got = DEFAULT_RUBRIC.validate_answers(
        {"correctness": "4", "safety": "Yes", "helpfulness": 5.0, "issue": "Incomplete"}
    )
    assert got == {"correctness": 4, "safety": True, "helpfulness": 5, "issue": "incomplete"}
    assert isinstance(got["helpfulness"], int)
    assert (
        DEFAULT_RUBRIC.validate_answers(
            {"correctness": 1, "safety": False, "helpfulness": 1, "issue": "none"}
        )["safety"]
        is False
    )


def test_every_problem_with_answers_is_named() -> None:
    with pytest.raises(InputError) as err:
        DEFAULT_RUBRIC.validate_answers(
            {"correctness": 6, "safety": "maybe", "issue": "nonsense", "colour": "red"}
        )
    problems = err.value.details["problems"]
    assert problems == [
        "colour: not a dimension of rubric plant-answer (correctness, safety, helpfulness, issue)",
        "correctness: must be from 1 to 5",
        "safety: answer yes or no (true or false)",
        "helpfulness: is required",
        "issue: must be one of none, incorrect, incomplete, unsafe, off_topic, unclear, other",
    ]
    with pytest.raises(InputError, match="whole number"):
        DEFAULT_RUBRIC.validate_answers(
            {"correctness": 3.5, "safety": True, "helpfulness": 3, "issue": "none"}
        )
    with pytest.raises(InputError, match="must be a number"):
        DEFAULT_RUBRIC.validate_answers(
            {"correctness": True, "safety": True, "helpfulness": 3, "issue": "none"}
        )
    with pytest.raises(InputError, match="an object"):
        DEFAULT_RUBRIC.validate_answers(["correctness", 3])


def test_codes_and_domains_for_agreement() -> None:
    dims = {d.name: d for d in DEFAULT_RUBRIC.dimensions}
    assert dims["correctness"].domain() == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert dims["correctness"].encode(4) == 4.0
    assert dims["safety"].domain() == [0.0, 1.0] and dims["safety"].encode(True) == 1.0
    assert dims["issue"].encode("incomplete") == 2.0
    assert dims["issue"].domain() == [float(i) for i in range(7)]
    real = Dimension(name="x", type="numeric", min=0, max=1, integer=False, level="interval")
    assert real.domain() is None and real.parse("0.25") == 0.25


def test_gold_expectations() -> None:
    dims = {d.name: d for d in DEFAULT_RUBRIC.dimensions}
    exp = DEFAULT_RUBRIC.validate_gold(
        {"correctness": {"min": 4}, "safety": False, "issue": ["unsafe", "incorrect"]}
    )
    assert exp == {
        "correctness": {"min": 4},
        "safety": {"in": [False]},
        "issue": {"in": ["unsafe", "incorrect"]},
    }
    assert dims["correctness"].meets(5, exp["correctness"])
    assert not dims["correctness"].meets(3, exp["correctness"])
    assert dims["safety"].meets(False, exp["safety"])
    assert not dims["safety"].meets(True, exp["safety"])
    assert dims["issue"].meets("incorrect", exp["issue"])
    with pytest.raises(InputError, match="colour"):
        DEFAULT_RUBRIC.validate_gold({"colour": "red"})
    with pytest.raises(InputError, match="min is above max"):
        DEFAULT_RUBRIC.validate_gold({"correctness": {"min": 5, "max": 2}})
    with pytest.raises(InputError, match="must be one of"):
        DEFAULT_RUBRIC.validate_gold({"issue": "typo"})


def test_pair_preferences_decode_by_the_recorded_order() -> None:
    assert [decode_preference(s, "AB") for s in ("first", "second", "tie")] == ["A", "B", "tie"]
    assert [decode_preference(s, "BA") for s in ("first", "second", "tie")] == ["B", "A", "tie"]


def _pool(sizes: dict[str, int]) -> list[Candidate]:
    return [
        Candidate(
            source="logs", source_ref=f"{k}-{i}", prompt="", response="", strata={"plant_id": k}
        )
        for k, n in sizes.items()
        for i in range(n)
    ]


def test_stratified_gives_equal_shares_and_passes_on_what_a_stratum_lacks() -> None:
    pool = _pool({"A": 100, "B": 100, "C": 3, "D": 100})
    got = Counter(c.strata["plant_id"] for c in stratified(random.Random(0), pool, 40))
    # C has only 3: its other 7 are shared by A, B and D (40 - 3 = 37 -> 13, 12, 12).
    assert got["C"] == 3 and sum(got.values()) == 40
    assert sorted([got["A"], got["B"], got["D"]]) == [12, 12, 13]
    even = Counter(c.strata["plant_id"] for c in stratified(random.Random(1), pool, 8))
    assert even == {"A": 2, "B": 2, "C": 2, "D": 2}
    # Asking for more than there is gives everything, once.
    everything = stratified(random.Random(2), pool, 1000)
    assert len({c.source_ref for c in everything}) == len(pool)


def test_stratified_is_seeded() -> None:
    pool = _pool({"A": 50, "B": 50})
    refs = [[c.source_ref for c in stratified(random.Random(s), pool, 10)] for s in (7, 7, 8)]
    assert refs[0] == refs[1] != refs[2]


def test_disagreement_is_one_minus_word_jaccard() -> None:
    assert disagreement("Use ISO VG 46 oil.", "use iso vg 46 oil") == 0.0
    assert disagreement("alpha beta", "gamma delta") == 1.0
    # {a, b, c} vs {b, c, d}: 2 shared of 4.
    assert disagreement("a b c", "b c d") == pytest.approx(0.5)
    assert disagreement("", "") == 0.0
