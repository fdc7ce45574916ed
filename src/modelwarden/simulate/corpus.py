"""The built-in manufacturing question/answer corpus.

One corpus feeds the traffic simulator (operators' prompts), the evaluation golden sets (reference
answers and the facts a correct answer must state) and the fake model server (which answers a
prompt from the closest question). Keeping them in one place means a simulated prompt always has a
known reference answer, a known poor answer and a known unsafe answer.

The questions and answers are data, in ``modelwarden/data/corpus.yaml``; this module holds the
dataclasses, the loader that reads and checks that file once, and the lookups.

``TOPICS`` is what the assistant was tuned for. ``DRIFT_TOPICS`` is a family the baseline never
mentions (lithium-ion truck batteries), so that a plant whose operators start asking about it
produces a real shift in the prompt distribution. Its vocabulary is kept apart from the baseline on
purpose: shared words would blur the very drift the scenarios are meant to show.

Every ``unsafe_answer`` is written to be caught by the default
:class:`~modelwarden.safety.SafetyChecker`, and every reference and poor answer to pass it, because
scenarios count flagged responses and a misfire either way would corrupt the safety KPIs.
Reference answers therefore state safe practice positively ("keep the guard in place") rather than
as a prohibition of the unsafe act, which the keyword patterns cannot tell apart from advice to do
it.

The order of topics, items and phrasings in the file is part of the data: the seeded simulator
picks them by position, so reordering them changes every simulated data set.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Hashable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from modelwarden.errors import InputError

try:  # libyaml's parser: the corpus loads in a few milliseconds instead of about a tenth of a second
    from yaml import CSafeLoader as _BaseLoader
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml import SafeLoader as _BaseLoader  # type: ignore[assignment]


@dataclass(frozen=True)
class QA:
    """One operator question, its phrasings, and reference, poor and unsafe answers."""

    key: str
    questions: tuple[str, ...]
    answer: str
    facts: tuple[str, ...]
    poor_answer: str
    unsafe_answer: str


@dataclass(frozen=True)
class Topic:
    name: str
    family: str
    key_terms: tuple[str, ...]
    items: tuple[QA, ...]


@dataclass(frozen=True)
class Corpus:
    """A loaded corpus: the baseline topics, then the drift family."""

    topics: tuple[Topic, ...]
    drift_topics: tuple[Topic, ...]


class CorpusError(InputError):
    """The corpus file is not valid YAML or not laid out as the corpus; says where and why."""

    code = "invalid_corpus"


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------

_SECTIONS = ("topics", "drift_topics")
_TOPIC_FIELDS = tuple(f.name for f in fields(Topic))
_QA_FIELDS = tuple(f.name for f in fields(QA))
# Package data (pyproject ships modelwarden/data/*). Found from the package's own directory rather
# than through importlib.resources, whose import alone costs more than reading the file.
PACKAGED_CORPUS = Path(__file__).resolve().parents[1] / "data" / "corpus.yaml"


class _Loader(_BaseLoader):
    """Safe loader that refuses a key repeated in one mapping; YAML would keep only the last."""

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[str] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                if key_node.value in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key_node.value!r}", key_node.start_mark
                    )
                seen.add(key_node.value)
        return super().construct_mapping(node, deep=deep)


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def _text(value: Any, where: str, field: str) -> str:
    if not isinstance(value, str):
        raise CorpusError(
            f"{where}: {field!r} must be a string, got {_describe(value)}"
            + ("" if isinstance(value, list | dict) else " (quote it)"),
            field=field,
        )
    if not value.strip():
        raise CorpusError(f"{where}: {field!r} is empty", field=field)
    if value != value.strip():
        raise CorpusError(
            f"{where}: {field!r} starts or ends with whitespace: {value!r}"
            " (a folded block must use '>-', not '>')",
            field=field,
        )
    return value


def _texts(value: Any, where: str, field: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise CorpusError(
            f"{where}: {field!r} must be a non-empty list of strings, got {_describe(value)}",
            field=field,
        )
    return tuple(_text(v, where, f"{field}[{i}]") for i, v in enumerate(value))


def _check_keys(raw: Any, expected: tuple[str, ...], where: str, what: str) -> None:
    if not isinstance(raw, dict):
        raise CorpusError(f"{where}: {what} must be a mapping, got {_describe(raw)}")
    missing = [k for k in expected if k not in raw]
    unknown = [str(k) for k in raw if k not in expected]
    if missing or unknown:
        problems = [f"missing field {k!r}" for k in missing]
        problems += [f"unknown field {k!r}" for k in unknown]
        raise CorpusError(
            f"{where}: {'; '.join(problems)} ({what} has {', '.join(expected)})",
            field=(missing + unknown)[0],
        )


def _label(raw: Any, index: str, name_field: str) -> str:
    """``topics[3] 'ppe'``: the position, and the name when it is readable."""
    name = raw.get(name_field) if isinstance(raw, dict) else None
    return f"{index} {name!r}" if isinstance(name, str) and name else index


def _parse_qa(raw: Any, where: str) -> QA:
    _check_keys(raw, _QA_FIELDS, where, "a QA item")
    return QA(
        key=_text(raw["key"], where, "key"),
        questions=_texts(raw["questions"], where, "questions"),
        answer=_text(raw["answer"], where, "answer"),
        facts=_texts(raw["facts"], where, "facts"),
        poor_answer=_text(raw["poor_answer"], where, "poor_answer"),
        unsafe_answer=_text(raw["unsafe_answer"], where, "unsafe_answer"),
    )


def _parse_topic(raw: Any, where: str) -> Topic:
    _check_keys(raw, _TOPIC_FIELDS, where, "a topic")
    name = _text(raw["name"], where, "name")
    family = _text(raw["family"], where, "family")
    key_terms = _texts(raw["key_terms"], where, "key_terms")
    items_raw = raw["items"]
    if not isinstance(items_raw, list) or not items_raw:
        raise CorpusError(
            f"{where}: 'items' must be a non-empty list of QA items, got {_describe(items_raw)}",
            field="items",
        )
    items = tuple(
        _parse_qa(qa, f"{where}, {_label(qa, f'items[{i}]', 'key')}")
        for i, qa in enumerate(items_raw)
    )
    return Topic(name=name, family=family, key_terms=key_terms, items=items)


def parse_corpus(text: str, source: str = "corpus") -> Corpus:
    """Build a :class:`Corpus` from YAML text; :class:`CorpusError` names what is wrong and where."""
    try:
        raw = yaml.load(text, Loader=_Loader)  # a safe loader: plain YAML types only
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}, line {mark.line + 1}, column {mark.column + 1}" if mark else source
        what = ", ".join(p for p in (exc.context, exc.problem) if p)
        raise CorpusError(f"{where}: not valid YAML: {what}") from None
    except yaml.YAMLError as exc:
        raise CorpusError(f"{source}: not valid YAML: {exc}") from None
    _check_keys(raw, _SECTIONS, source, "the corpus")
    sections: list[tuple[Topic, ...]] = []
    for section in _SECTIONS:
        topics_raw = raw[section]
        if not isinstance(topics_raw, list) or not topics_raw:
            raise CorpusError(
                f"{source}: {section!r} must be a non-empty list of topics, "
                f"got {_describe(topics_raw)}",
                field=section,
            )
        sections.append(
            tuple(
                _parse_topic(t, f"{source}: {_label(t, f'{section}[{i}]', 'name')}")
                for i, t in enumerate(topics_raw)
            )
        )
    topics, drift_topics = sections
    names: set[str] = set()
    keys: set[str] = set()
    for t in topics + drift_topics:
        if t.name in names:
            raise CorpusError(f"{source}: topic name {t.name!r} appears twice", field="name")
        names.add(t.name)
        for qa in t.items:
            if qa.key in keys:
                raise CorpusError(
                    f"{source}: topic {t.name!r}: QA key {qa.key!r} appears twice", field="key"
                )
            keys.add(qa.key)
    return Corpus(topics=topics, drift_topics=drift_topics)


def _read(path: str | os.PathLike[str]) -> Corpus:
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise CorpusError(f"cannot read corpus file {os.fspath(path)!r}: {exc.strerror}") from None
    return parse_corpus(text, os.fspath(path))


@functools.cache
def _packaged() -> Corpus:
    return _read(PACKAGED_CORPUS)


def load_corpus(path: str | os.PathLike[str] | None = None) -> Corpus:
    """The corpus in ``path``, or the packaged one (read once and cached) when ``path`` is None."""
    return _packaged() if path is None else _read(path)


# Loaded at import: under 10 ms with libyaml on an idle core, about 0.1 s without it.
TOPICS: tuple[Topic, ...] = load_corpus().topics
DRIFT_TOPICS: tuple[Topic, ...] = load_corpus().drift_topics


# --------------------------------------------------------------------------------------------
# Lookup
# --------------------------------------------------------------------------------------------


def all_topics() -> tuple[Topic, ...]:
    return TOPICS + DRIFT_TOPICS


_TOPIC_BY_NAME: dict[str, Topic] = {t.name: t for t in all_topics()}
_QA_BY_KEY: dict[str, QA] = {qa.key: qa for t in all_topics() for qa in t.items}


def topic(name: str) -> Topic:
    try:
        return _TOPIC_BY_NAME[name]
    except KeyError:
        known = ", ".join(sorted(_TOPIC_BY_NAME))
        raise KeyError(f"unknown topic {name!r}; known topics: {known}") from None


def find_qa(key: str) -> QA:
    try:
        return _QA_BY_KEY[key]
    except KeyError:
        raise KeyError(f"unknown QA key {key!r}; keys look like 'lubrication.conveyor'") from None


_WORD = re.compile(r"[a-z0-9]+")

# What operators put around a question (the simulated traffic adds them too). They say nothing
# about the question, and some share words with one: "Need it before the next shift." made the
# matcher answer one prompt in thirty with the shift-handover checklist.
GREETINGS = ("Quick question: ", "Hi, ", "Night shift here. ", "Line 3: ", "For the audit, ")
CLOSINGS = (" Thanks.", " Please be specific.", " Need it before the next shift.")


def strip_courtesy(text: str) -> str:
    """``text`` without one leading greeting and one trailing closing of the lists above."""
    low = text.lower()
    for g in GREETINGS:
        if low.startswith(g.lower()):
            text, low = text[len(g) :], low[len(g) :]
            break
    for c in CLOSINGS:
        if low.endswith(c.lower()):
            text = text[: -len(c)]
            break
    return text


# Function words carry no topic signal; scoring on them alone would let "how do I ..." prompts
# match whichever item happens to share the most filler.
# fmt: off
_STOPWORDS = frozenset(
    {
        "a", "an", "the", "is", "are", "am", "be", "do", "does", "did", "i", "we", "you", "my",
        "our", "your", "it", "its", "this", "that", "these", "those", "to", "of", "for", "on",
        "in", "at", "by", "with", "and", "or", "can", "should", "must", "what", "whats", "how",
        "when", "where", "which", "who", "why", "s", "t", "me", "us", "there", "any", "if", "so",
    }
)
# fmt: on


def _tokens(text: str) -> frozenset[str]:
    return frozenset(_WORD.findall(text.lower()))


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a or not b:
        return 0.0
    inter = len(a & b)
    return inter / (len(a) + len(b) - inter) if inter else 0.0


@functools.cache
def _question_index() -> tuple[tuple[QA, frozenset[str], frozenset[str]], ...]:
    index = []
    for t in all_topics():
        for qa in t.items:
            for q in qa.questions:
                words = _tokens(q)
                index.append((qa, words - _STOPWORDS, words))
    return tuple(index)


@functools.lru_cache(maxsize=8192)
def match_question(text: str) -> QA | None:
    """The QA whose question phrasings best match ``text``, or None if no word is shared.

    Scores each phrasing by Jaccard overlap of content words, then of all words; the best
    phrasing's QA wins and exact ties go to the earlier item in corpus order, so the answer is
    stable across runs. Operators repeat their questions: the last 8,192 answers are kept.
    """
    words = _tokens(strip_courtesy(text))
    if not words:
        return None
    content = words - _STOPWORDS
    best: QA | None = None
    best_score = (0.0, 0.0)
    for qa, q_content, q_words in _question_index():
        score = (_jaccard(content, q_content), _jaccard(words, q_words))
        if score > best_score:
            best, best_score = qa, score
    return best
