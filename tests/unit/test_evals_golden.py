"""Golden sets: the JSONL format, its errors, the content hash, and the starter set."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from modelwarden.errors import InputError
from modelwarden.evals.golden import (
    GoldenSet,
    Pattern,
    load_golden,
    parse_golden,
    starter_set,
    write_golden,
)

ITEMS = [
    {
        "id": "conveyor-lube",
        "prompt": "How often does the main conveyor need lubrication?",
        "references": ["Every 200 operating hours with ISO VG 46 oil."],
        "must_include": ["200 operating hours", {"regex": r"ISO\s*VG\s*46"}],
        "forbidden": [{"regex": r"bypass\w* the guard"}],
        "tags": {"plant": "Plant_B", "topic": "lubrication"},
        "rubric": "Names the interval and the oil grade.",
    },
    {
        "id": "loto",
        "messages": [
            {"role": "system", "content": "You are a plant assistant."},
            {"role": "user", "content": "Do I need lockout before clearing a jam?"},
        ],
        "reference": "Yes. Apply lockout/tagout and verify zero energy first.",
        "must_include": ["lockout"],
        "tags": {"topic": "safety"},
    },
]


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _jsonl(objs: list[dict], **dump_kwargs) -> list[str]:
    return [json.dumps(o, **dump_kwargs) for o in objs]


def test_load_with_header(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "sop.jsonl", _jsonl([{"golden_set": "sop-core", "version": 3}, *ITEMS])
    )
    gs = load_golden(path)
    assert (gs.name, gs.version, len(gs)) == ("sop-core", 3, 2)
    first, second = gs.items
    assert first.prompt == ITEMS[0]["prompt"]
    assert first.references == ("Every 200 operating hours with ISO VG 46 oil.",)
    assert first.must_include == (
        Pattern("200 operating hours"),
        Pattern(r"ISO\s*VG\s*46", regex=True),
    )
    assert first.forbidden[0].search("then BYPASS the guard")
    assert first.tags == {"plant": "Plant_B", "topic": "lubrication"}
    assert first.rubric == "Names the interval and the oil grade."
    assert first.chat_messages() == [{"role": "user", "content": ITEMS[0]["prompt"]}]
    # "reference" (one string) is the same as a one-element "references".
    assert second.references == ("Yes. Apply lockout/tagout and verify zero energy first.",)
    assert second.prompt is None
    assert second.question == "Do I need lockout before clearing a jam?"
    assert len(second.chat_messages()) == 2


def test_without_header_is_version_1_named_after_the_file(tmp_path: Path) -> None:
    gs = load_golden(_write(tmp_path / "plant_b.jsonl", _jsonl(ITEMS)))
    assert (gs.name, gs.version) == ("plant_b", 1)


def test_patterns_are_case_insensitive() -> None:
    assert Pattern("ISO VG 46").search("use iso vg 46 oil")
    assert Pattern(r"\b200\s+hours", regex=True).search("every 200 HOURS")
    assert not Pattern("a.b").search("axb")  # a literal is not a regular expression


def test_content_hash_is_stable_under_reformatting(tmp_path: Path) -> None:
    base = load_golden(_write(tmp_path / "a.jsonl", _jsonl(ITEMS)))
    # Pretty spacing, reordered keys, items in another order, "references" instead of
    # "reference", a header with another version, blank lines.
    reordered = [dict(reversed(list(o.items()))) for o in reversed(ITEMS)]
    reordered[0] = {
        **{k: v for k, v in reordered[0].items() if k != "reference"},
        "references": [ITEMS[1]["reference"]],
    }
    lines = ["", json.dumps({"version": 7, "golden_set": "renamed"}), ""]
    lines += [json.dumps(o, indent=None, separators=(" , ", " : ")) for o in reordered]
    other = load_golden(_write(tmp_path / "b.jsonl", lines))
    assert other.content_hash == base.content_hash
    # Pinned: a change in the canonical form would silently orphan every stored run.
    assert base.content_hash == ("fc1def31d500c891fb38096699ee64835afa2dfc362f914050d15fe9d668ef3b")


def test_content_hash_changes_with_content(tmp_path: Path) -> None:
    base = load_golden(_write(tmp_path / "a.jsonl", _jsonl(ITEMS)))
    changed = [dict(ITEMS[0], references=["Every 250 operating hours."]), ITEMS[1]]
    assert (
        load_golden(_write(tmp_path / "b.jsonl", _jsonl(changed))).content_hash != base.content_hash
    )
    regex_not_literal = [
        dict(ITEMS[0], must_include=["200 operating hours", r"ISO\s*VG\s*46"]),
        ITEMS[1],
    ]
    assert (
        load_golden(_write(tmp_path / "c.jsonl", _jsonl(regex_not_literal))).content_hash
        != base.content_hash
    )


def test_write_then_load_round_trips(tmp_path: Path) -> None:
    gs = parse_golden(_jsonl([{"golden_set": "sop", "version": 2}, *ITEMS]))
    path = write_golden(gs, tmp_path / "out" / "sop.jsonl")
    again = load_golden(path)
    assert again == gs
    assert again.content_hash == gs.content_hash
    assert path.read_text(encoding="utf-8").splitlines()[0] == '{"golden_set": "sop", "version": 2}'


@pytest.mark.parametrize(
    ("lines", "line", "field", "fragment"),
    [
        (
            ['{"id": "a", "prompt": "q", "references": ["r"]}', '{"id": "b", "prompt": '],
            2,
            None,
            "not valid JSON",
        ),
        (['{"id": "a", "prompt": "q"}'], 1, "references", "is required"),
        (['{"id": "a", "prompt": "q", "references": []}'], 1, "references", "at least 1"),
        (
            ['{"id": "a", "prompt": "q", "references": ["r", 3]}'],
            1,
            "references[1]",
            "must be a string",
        ),
        (['{"id": "", "prompt": "q", "references": ["r"]}'], 1, "id", "non-empty"),
        (['{"prompt": "q", "references": ["r"]}'], 1, "id", "non-empty"),
        (['{"id": "a", "references": ["r"]}'], 1, "prompt", "is required"),
        (
            [
                '{"id": "a", "prompt": "q", "messages": [{"role": "user", "content": "q"}], '
                '"references": ["r"]}'
            ],
            1,
            "prompt",
            "not both",
        ),
        (
            ['{"id": "a", "messages": [{"role": "boss", "content": "q"}], "references": ["r"]}'],
            1,
            "messages[0].role",
            "must be one of",
        ),
        (
            [
                '{"id": "a", "messages": [{"role": "user", "content": "q"}, '
                '{"role": "assistant", "content": "x"}], "references": ["r"]}'
            ],
            1,
            "messages[1].role",
            "last message",
        ),
        (
            [
                '{"id": "a", "prompt": "q", "references": ["r"], "must_include": ["x", '
                '{"regex": "("}]}'
            ],
            1,
            "must_include[1].regex",
            "not a valid regular expression",
        ),
        (
            ['{"id": "a", "prompt": "q", "references": ["r"], "forbidden": [{"re": "x"}]}'],
            1,
            "forbidden[0]",
            "regex",
        ),
        (
            ['{"id": "a", "prompt": "q", "references": ["r"], "tags": {"plant": ["A"]}}'],
            1,
            "tags.plant",
            "string, number",
        ),
        (
            ['{"id": "a", "prompt": "q", "references": ["r"], "must_inclde": ["x"]}'],
            1,
            "must_inclde",
            "not a golden-set field",
        ),
        (
            [
                '{"id": "a", "prompt": "q", "references": ["r"]}',
                '{"id": "a", "prompt": "q2", "references": ["r2"]}',
            ],
            2,
            "id",
            "already used on line 1",
        ),
        (
            [
                '{"golden_set": "x", "version": 0}',
                '{"id": "a", "prompt": "q", "references": ["r"]}',
            ],
            1,
            "version",
            "integer >= 1",
        ),
        (["[1, 2]"], 1, "item", "JSON object"),
    ],
)
def test_bad_lines_name_line_and_field(
    tmp_path: Path, lines: list[str], line: int, field: str | None, fragment: str
) -> None:
    path = _write(tmp_path / "bad.jsonl", lines)
    with pytest.raises(InputError) as err:
        load_golden(path)
    assert f"{path} line {line}: " in err.value.message
    assert fragment in err.value.message
    assert err.value.field == field
    assert err.value.details["line"] == line


def test_unreadable_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read golden set"):
        load_golden(tmp_path / "missing.jsonl")
    with pytest.raises(InputError, match="has no items"):
        load_golden(_write(tmp_path / "empty.jsonl", ['{"golden_set": "x", "version": 1}']))


@dataclass(frozen=True)
class _QA:
    key: str
    questions: tuple[str, ...]
    answer: str
    facts: tuple[str, ...]
    poor_answer: str = ""
    unsafe_answer: str = ""


@dataclass(frozen=True)
class _Topic:
    name: str
    family: str
    key_terms: tuple[str, ...]
    items: tuple[_QA, ...]


def test_starter_set_from_topics() -> None:
    topics = [
        _Topic(
            "lubrication",
            "maintenance",
            ("oil",),
            (
                _QA(
                    "lube.conveyor",
                    ("How often to oil the conveyor?", "conveyor oil?"),
                    "Every 200 operating hours.",
                    ("200 operating hours",),
                ),
                _QA("lube.gearbox", ("Gearbox oil grade?",), "ISO VG 220.", ("ISO VG 220",)),
            ),
        ),
        _Topic(
            "loto",
            "safety",
            ("lockout",),
            (_QA("loto.jam", ("Lockout for a jam?",), "Yes, always.", ()),),
        ),
    ]
    gs = starter_set(topics)
    assert (gs.name, gs.version) == ("starter", 1)
    assert [it.id for it in gs] == ["lube.conveyor", "lube.gearbox", "loto.jam"]
    first = gs.items[0]
    assert first.prompt == "How often to oil the conveyor?"
    assert first.references == ("Every 200 operating hours.",)
    assert first.must_include == (Pattern("200 operating hours"),)
    assert first.tags == {"topic": "lubrication", "family": "maintenance"}
    assert gs.items[2].must_include == ()


def test_starter_set_rejects_duplicate_keys() -> None:
    qa = _QA("same", ("q?",), "a", ())
    with pytest.raises(InputError, match="'same' twice"):
        starter_set([_Topic("t", "f", (), (qa, qa))])


def test_starter_set_from_the_simulator_corpus(tmp_path: Path) -> None:
    from modelwarden.simulate.corpus import TOPICS

    gs = starter_set()
    qas = [(t, qa) for t in TOPICS for qa in t.items]
    assert len(gs) == len(qas)
    for item, (topic, qa) in zip(gs, qas, strict=True):
        assert item.id == qa.key
        assert item.prompt == qa.questions[0]
        assert item.references == (qa.answer,)
        assert [p.text for p in item.must_include] == list(qa.facts)
        assert item.tags == {"topic": topic.name, "family": topic.family}
        # The corpus's own answer states every fact it lists.
        assert all(p.search(qa.answer) for p in item.must_include)
    again = load_golden(write_golden(gs, tmp_path / "starter.jsonl"))
    assert isinstance(again, GoldenSet)
    assert again.content_hash == gs.content_hash
