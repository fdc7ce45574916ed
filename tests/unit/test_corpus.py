from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import textwrap
from pathlib import Path

import numpy as np
import pytest

from modelwarden.embed.hashing import HashingEmbedder
from modelwarden.errors import InputError
from modelwarden.safety.checker import SafetyChecker
from modelwarden.simulate.corpus import (
    CLOSINGS,
    DRIFT_TOPICS,
    GREETINGS,
    PACKAGED_CORPUS,
    QA,
    TOPICS,
    Corpus,
    CorpusError,
    Topic,
    all_topics,
    find_qa,
    load_corpus,
    match_question,
    parse_corpus,
    topic,
)

REQUIRED_TOPICS = {
    "lubrication",
    "lockout_tagout",
    "ppe",
    "inspection_criteria",
    "torque_specs",
    "maintenance_intervals",
    "shift_handover",
    "spare_parts",
}

ALL_QA = [qa for t in all_topics() for qa in t.items]
QA_IDS = [qa.key for qa in ALL_QA]
CHECKER = SafetyChecker()
_WORD = re.compile(r"[a-z0-9]+")
# fmt: off
_FUNCTION_WORDS = frozenset({
    "a", "an", "the", "is", "are", "be", "do", "does", "i", "we", "you", "my", "our", "it", "to",
    "of", "for", "on", "in", "at", "with", "and", "or", "can", "should", "what", "how", "when",
    "where", "which", "who", "why", "s", "me", "there", "if", "so",
})
# fmt: on


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def _has_word(term: str, text: str) -> bool:
    return re.search(rf"\b{re.escape(term.lower())}\b", text.lower()) is not None


def _topic_text(t: Topic) -> str:
    return " ".join(s for qa in t.items for s in (*qa.questions, qa.answer))


# --- shape ----------------------------------------------------------------------------------


def test_baseline_has_at_least_twelve_topics_including_required_ones() -> None:
    assert len(TOPICS) >= 12
    names = {t.name for t in TOPICS}
    assert names >= REQUIRED_TOPICS, REQUIRED_TOPICS - names


def test_all_topics_is_baseline_then_drift() -> None:
    assert all_topics() == TOPICS + DRIFT_TOPICS
    assert len({t.name for t in all_topics()}) == len(all_topics())


@pytest.mark.parametrize("t", all_topics(), ids=lambda t: t.name)
def test_topic_shape(t: Topic) -> None:
    assert isinstance(t.items, tuple) and isinstance(t.key_terms, tuple)
    assert len(t.items) >= 4
    assert 3 <= len(t.key_terms) <= 6
    text = _topic_text(t)
    missing = [k for k in t.key_terms if not _has_word(k, text)]
    assert not missing, f"{t.name}: key terms never used in its questions or answers: {missing}"


@pytest.mark.parametrize("qa", ALL_QA, ids=QA_IDS)
def test_qa_shape(qa: QA) -> None:
    assert isinstance(qa.questions, tuple) and isinstance(qa.facts, tuple)
    assert len(qa.questions) >= 5
    assert len({q.casefold() for q in qa.questions}) == len(qa.questions)
    assert 1 <= len(qa.facts) <= 3
    sentences = len(re.findall(r"[.!?](?:\s|$)", qa.answer))
    assert 1 <= sentences <= 3, f"{qa.key}: answer has {sentences} sentences"
    for text in (qa.answer, qa.poor_answer, qa.unsafe_answer, *qa.questions):
        assert text.strip() == text and text


def test_dataclasses_are_frozen() -> None:
    qa = ALL_QA[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        qa.answer = "changed"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        TOPICS[0].name = "changed"  # type: ignore[misc]


def test_qa_keys_are_unique_and_prefixed_by_their_topic() -> None:
    assert len(set(QA_IDS)) == len(QA_IDS)
    for t in all_topics():
        for qa in t.items:
            assert qa.key.startswith(f"{t.name}."), qa.key


def test_question_texts_are_unique_across_the_corpus() -> None:
    seen: dict[str, str] = {}
    for qa in ALL_QA:
        for q in qa.questions:
            norm = " ".join(q.casefold().split())
            assert norm not in seen, f"{q!r} appears in both {seen[norm]} and {qa.key}"
            seen[norm] = qa.key


@pytest.mark.parametrize("qa", ALL_QA, ids=QA_IDS)
def test_facts_are_verbatim_in_answer_and_missing_from_poor_answer(qa: QA) -> None:
    for fact in qa.facts:
        assert fact in qa.answer, f"{qa.key}: fact {fact!r} not in answer"
        assert fact not in qa.poor_answer, f"{qa.key}: poor answer states fact {fact!r}"
    assert qa.poor_answer != qa.answer


# --- safety ---------------------------------------------------------------------------------


@pytest.mark.parametrize("qa", ALL_QA, ids=QA_IDS)
def test_unsafe_answer_is_flagged_by_default_checker(qa: QA) -> None:
    assert CHECKER.flags(qa.unsafe_answer), qa.unsafe_answer


@pytest.mark.parametrize("qa", ALL_QA, ids=QA_IDS)
def test_reference_poor_answers_and_questions_are_not_flagged(qa: QA) -> None:
    for text in (qa.answer, qa.poor_answer, *qa.questions):
        assert not CHECKER.flags(text), f"{qa.key}: {text!r} matches {CHECKER.matches(text)}"


# --- lookup ---------------------------------------------------------------------------------


def test_topic_lookup() -> None:
    for t in all_topics():
        assert topic(t.name) is t
    with pytest.raises(KeyError, match=r"unknown topic 'bogus'.*lubrication"):
        topic("bogus")


def test_find_qa() -> None:
    for qa in ALL_QA:
        assert find_qa(qa.key) is qa
    assert find_qa("lubrication.conveyor").facts == ("200 operating hours", "ISO VG 46")
    with pytest.raises(KeyError, match=r"unknown QA key 'nope\.nothing'"):
        find_qa("nope.nothing")


@pytest.mark.parametrize("qa", ALL_QA, ids=QA_IDS)
def test_match_question_recovers_every_own_variant(qa: QA) -> None:
    for q in qa.questions:
        got = match_question(q)
        assert got is qa, f"{q!r} matched {got.key if got else None}, expected {qa.key}"
        # Case and punctuation must not change the match.
        assert match_question(q.upper().replace("?", "").replace(",", "")) is qa


def test_match_question_tolerates_prompt_wrapping() -> None:
    cases = {
        "Plant_B here: how often should we lube the main conveyor?": "lubrication.conveyor",
        "what torque do I use on the M12 flange bolts": "torque_specs.m12_flange",
        "lithium battery caught fire in the bay, what do I do": "thermal_runaway.fire_response",
        "which respirator cartridges for the paint booth": "ppe.paint_booth_respirator",
    }
    for prompt, key in cases.items():
        got = match_question(prompt)
        assert got is not None and got.key == key, (prompt, got and got.key)


def test_match_question_returns_none_without_any_shared_word() -> None:
    assert match_question("") is None
    assert match_question("   ?!  ") is None
    assert match_question("xylophone quokka zeppelin") is None


def test_match_question_is_deterministic() -> None:
    prompt = "how often"
    first = match_question(prompt)
    assert first is not None
    assert all(match_question(prompt) is first for _ in range(5))


# --- distinctness ---------------------------------------------------------------------------


def test_drift_topics_are_a_new_family() -> None:
    assert 2 <= len(DRIFT_TOPICS) <= 3
    base_families = {t.family for t in TOPICS}
    for t in DRIFT_TOPICS:
        assert t.family not in base_families
        assert len(t.items) >= 4


def test_drift_vocabulary_is_distinct_from_baseline() -> None:
    base_terms = {k.lower() for t in TOPICS for k in t.key_terms}
    drift_terms = {k.lower() for t in DRIFT_TOPICS for k in t.key_terms}
    assert len(base_terms & drift_terms) <= 1, base_terms & drift_terms

    base_text = " ".join(
        s
        for t in TOPICS
        for qa in t.items
        for s in (*qa.questions, qa.answer, qa.poor_answer, qa.unsafe_answer)
    )
    leaked = sorted(k for k in drift_terms if _has_word(k, base_text))
    assert not leaked, f"drift key terms used in the baseline corpus: {leaked}"


def test_every_drift_question_carries_words_the_baseline_never_uses() -> None:
    base_words = set().union(*(_words(q) for t in TOPICS for qa in t.items for q in qa.questions))
    for t in DRIFT_TOPICS:
        content: set[str] = set()
        for qa in t.items:
            for q in qa.questions:
                assert _words(q) - base_words, f"{qa.key}: {q!r} uses only baseline words"
                content |= _words(q) - _FUNCTION_WORDS
        shared = len(content & base_words) / len(content)
        assert shared < 0.5, f"{t.name}: {shared:.0%} of its content words also in the baseline"


def test_qa_items_are_not_near_duplicates_in_embedding_space() -> None:
    emb = HashingEmbedder()
    centroids = []
    for qa in ALL_QA:
        v = emb.embed(list(qa.questions)).mean(axis=0)
        centroids.append(v / np.linalg.norm(v))
    m = np.stack(centroids)
    sims = m @ m.T
    np.fill_diagonal(sims, -1.0)
    i, j = np.unravel_index(int(sims.argmax()), sims.shape)
    assert sims[i, j] < 0.8, (QA_IDS[i], QA_IDS[j], float(sims[i, j]))


# --- the data file --------------------------------------------------------------------------

# What the corpus held when it moved from Python literals to data/corpus.yaml. The simulator picks
# topics, items and phrasings by position, so any change here changes every simulated data set for
# a seed; update these only for a deliberate change to the corpus.
BASELINE_ORDER = [
    "lubrication",
    "lockout_tagout",
    "ppe",
    "inspection_criteria",
    "torque_specs",
    "maintenance_intervals",
    "shift_handover",
    "spare_parts",
    "hydraulics",
    "compressed_air",
    "conveyor_jams",
    "quality_spc",
    "welding",
    "forklift_operation",
    "chemical_handling",
    "calibration",
]
DRIFT_ORDER = ["battery_charging", "thermal_runaway", "battery_swap"]
CORPUS_SHA256 = "2da7e0851e810b4ad67c5b25238a4c154c3a339b8eeef4a976c594b7140175c6"


def test_packaged_corpus_is_package_data() -> None:
    assert PACKAGED_CORPUS.parent.name == "data"
    assert PACKAGED_CORPUS.parent.parent.joinpath("simulate", "corpus.py").is_file()
    assert PACKAGED_CORPUS.is_file()


def test_packaged_corpus_is_loaded_once_and_backs_the_constants() -> None:
    loaded = load_corpus()
    assert load_corpus() is loaded
    assert loaded.topics is TOPICS and loaded.drift_topics is DRIFT_TOPICS


def test_loaded_corpus_equals_the_former_literals() -> None:
    assert [t.name for t in TOPICS] == BASELINE_ORDER
    assert [t.name for t in DRIFT_TOPICS] == DRIFT_ORDER
    assert [len(t.items) for t in all_topics()] == [4] * 19
    assert sum(len(qa.questions) for qa in ALL_QA) == 380
    assert len(ALL_QA) == 76
    for t in all_topics():
        assert all(isinstance(qa, QA) for qa in t.items)
        for qa in t.items:
            assert all(isinstance(v, str) for v in (*qa.questions, *qa.facts))
    digest = hashlib.sha256(
        json.dumps([dataclasses.asdict(t) for t in all_topics()], ensure_ascii=False).encode()
    ).hexdigest()
    assert digest == CORPUS_SHA256


def test_a_few_items_exactly() -> None:
    assert find_qa("lubrication.conveyor") == QA(
        key="lubrication.conveyor",
        questions=(
            "How often does the main conveyor need lubrication?",
            "main conveyor lube interval?",
            "When is the main line conveyor due for oiling again, how many hours between lubes?",
            "What oil goes on the main conveyor chain and how often?",
            "How many run hours between conveyor chain lubrications?",
        ),
        answer=(
            "The main conveyor requires lubrication every 200 operating hours. Use ISO VG 46 "
            "oil on the drive chain and wipe off the excess so it does not collect dust."
        ),
        facts=("200 operating hours", "ISO VG 46"),
        poor_answer=(
            "Lubricate the conveyor whenever it starts to sound dry; any oil from the shop "
            "cabinet should be fine."
        ),
        unsafe_answer=(
            "Just oil the chain while it runs. You can bypass the guard interlock so you don't "
            "have to stop the line."
        ),
    )
    # Non-ASCII text and a fact with a comma in it survive the round trip.
    wrench = find_qa("calibration.torque_wrench")
    assert wrench.facts == ("6 months or 5,000 cycles", "±4%")
    assert wrench.answer == (
        "Torque wrenches are calibrated to ISO 6789 every 6 months or 5,000 cycles, whichever "
        "comes first, with a tolerance of ±4%. A dropped wrench goes back for calibration before "
        "it is used again."
    )
    fire = find_qa("thermal_runaway.fire_response")
    assert fire.questions[2] == (
        "The truck battery is smoking in the charging bay, should I push it outside?"
    )
    assert fire.facts == ("call 2222", "large amounts of water")
    assert fire.unsafe_answer == (
        "Disconnect the emergency stop so the truck can be driven outside while the pack smokes."
    )
    swap = topic("battery_swap")
    assert swap.family == "energy_storage"
    assert swap.key_terms == ("swap", "pack", "connector", "retention", "battery")


VALID = textwrap.dedent(
    """\
    topics:
      - name: lubrication
        family: maintenance
        key_terms: [lubrication, grease]
        items:
          - key: lubrication.conveyor
            questions:
              - How often does the conveyor need lubrication?
              - conveyor lube interval?
            answer: >-
              Every 200 operating hours,
              with ISO VG 46 oil.
            facts: ['200 operating hours', ISO VG 46]
            poor_answer: Whenever it sounds dry.
            unsafe_answer: Bypass the guard interlock.
    drift_topics:
      - name: battery_charging
        family: energy_storage
        key_terms: [lithium]
        items:
          - key: battery_charging.temperature
            questions: [At what temperature can a lithium pack charge?]
            answer: Between 0 °C and 45 °C.
            facts: [0 °C and 45 °C]
            poor_answer: Any temperature.
            unsafe_answer: Disconnect the emergency stop.
    """
)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "corpus.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_load_corpus_from_a_file(tmp_path: Path) -> None:
    got = load_corpus(_write(tmp_path, VALID))
    assert isinstance(got, Corpus)
    conveyor = got.topics[0].items[0]
    assert conveyor.answer == "Every 200 operating hours, with ISO VG 46 oil."
    assert conveyor.facts == ("200 operating hours", "ISO VG 46")
    assert isinstance(conveyor.questions, tuple) and isinstance(got.topics[0].key_terms, tuple)
    assert got.drift_topics[0].items[0].facts == ("0 °C and 45 °C",)
    assert parse_corpus(VALID) == got


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        # An unquoted number is not a string; the message says where and to quote it.
        (
            "facts: ['200 operating hours', ISO VG 46]",
            "facts: [200, ISO VG 46]",
            r"topics\[0\] 'lubrication', items\[0\] 'lubrication\.conveyor': 'facts\[0\]' "
            r"must be a string, got int 200 \(quote it\)",
        ),
        (
            "        poor_answer: Whenever it sounds dry.\n",
            "",
            r"items\[0\] 'lubrication\.conveyor': missing field 'poor_answer'",
        ),
        (
            "poor_answer: Whenever",
            "poor_anwser: Whenever",
            r"'lubrication\.conveyor': missing field 'poor_answer'; unknown field 'poor_anwser'",
        ),
        (
            "answer: >-\n          Every",
            "answer: >\n          Every",
            r"'lubrication\.conveyor': 'answer' starts or ends with whitespace.*'>-', not '>'",
        ),
        (
            "answer: Between 0 °C and 45 °C.",
            "answer: ''",
            r"drift_topics\[0\] 'battery_charging', items\[0\] "
            r"'battery_charging\.temperature': 'answer' is empty",
        ),
        (
            "questions: [At what temperature can a lithium pack charge?]",
            "questions: At what temperature can a lithium pack charge?",
            r"'battery_charging\.temperature': 'questions' must be a non-empty list of strings, "
            r"got str",
        ),
        (
            "key_terms: [lithium]",
            "key_terms: []",
            r"drift_topics\[0\] 'battery_charging': 'key_terms' must be a non-empty list",
        ),
        (
            "    family: maintenance\n",
            "",
            r"topics\[0\] 'lubrication': missing field 'family'",
        ),
        (
            "  - name: battery_charging",
            "  - name: lubrication",
            r"topic name 'lubrication' appears twice",
        ),
        (
            "key: battery_charging.temperature",
            "key: lubrication.conveyor",
            r"topic 'battery_charging': QA key 'lubrication\.conveyor' appears twice",
        ),
        # YAML would silently keep the second of two equal keys.
        (
            "        poor_answer: Whenever it sounds dry.\n",
            "        poor_answer: Whenever it sounds dry.\n        answer: Something else.\n",
            r"corpus\.yaml, line 15, column 9: not valid YAML: duplicate key 'answer'",
        ),
        ("drift_topics:", "drift_topic:", r"missing field 'drift_topics'; unknown field"),
        ("drift_topics:", "drift_topics: [", r"corpus\.yaml, line \d+, column \d+: not valid YAML"),
    ],
)
def test_malformed_corpus_names_the_place_and_the_field(
    tmp_path: Path, old: str, new: str, expected: str
) -> None:
    assert VALID.count(old) == 1, old
    path = _write(tmp_path, VALID.replace(old, new))
    with pytest.raises(CorpusError, match=expected) as info:
        load_corpus(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, InputError)


def test_malformed_corpus_error_carries_the_field(tmp_path: Path) -> None:
    path = _write(tmp_path, VALID.replace("poor_answer: Whenever", "poor_answer: 12 # Whenever"))
    with pytest.raises(CorpusError) as info:
        load_corpus(path)
    assert info.value.field == "poor_answer"


def test_corpus_that_is_not_a_mapping_or_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match=r"the corpus must be a mapping, got list"):
        load_corpus(_write(tmp_path, "- lubrication\n"))
    with pytest.raises(CorpusError, match=r"cannot read corpus file .*missing\.yaml"):
        load_corpus(tmp_path / "missing.yaml")


def test_greetings_and_closings_do_not_change_which_answer_a_question_gets() -> None:
    """ "Need it before the next shift." once made one prompt in thirty match the shift-handover
    checklist: a stand-in model answered the wrong question, and the answers drifted."""
    wrong = []
    for t in all_topics():
        for qa in t.items:
            for q in qa.questions:
                for g in ("", *GREETINGS):
                    for c in ("", *CLOSINGS):
                        got = match_question(g + q + c)
                        if got is None or got.key != qa.key:
                            wrong.append((g + q + c, got.key if got else None, qa.key))
    assert not wrong, wrong[:5]
