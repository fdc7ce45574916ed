"""Golden sets: versioned JSONL files of prompts with reference answers and the facts they need.

Format (one JSON object per line; blank lines are ignored)::

    {"golden_set": "sop-core", "version": 3}                       optional header, first line
    {"id": "conveyor-lube", "prompt": "What is the lubrication schedule ...?",
     "references": ["Every 200 operating hours with ISO VG 46 oil."],
     "must_include": ["200", {"regex": "ISO\\s*VG\\s*46"}],
     "forbidden": [{"regex": "skip\\w* lockout"}],
     "tags": {"plant": "Plant_B", "topic": "lubrication"},
     "rubric": "Names the interval and the oil grade."}

Per item: ``id`` (unique, non-empty string); exactly one of ``prompt`` (string) or ``messages``
(an OpenAI chat list of ``{"role", "content"}`` objects); ``references`` (one or more strings;
``reference`` with a single string is accepted too); ``must_include`` and ``forbidden`` (strings,
matched as case-insensitive substrings, or ``{"regex": ...}`` objects, matched case-insensitively);
``tags`` (an object of scalar values); ``rubric`` (a string or an object, for human reviewers).
Unknown fields are rejected, because a misspelt ``must_include`` would otherwise silently check
nothing. A file without a header is version 1 of a set named after the file.

``content_hash`` is a sha256 over the canonical form of the items sorted by id, so neither
whitespace, key order, ``reference`` versus ``references``, nor the order of lines changes it;
any change to what is asked or expected does.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelwarden.errors import InputError

HEADER_KEYS = frozenset({"golden_set", "version"})
ITEM_KEYS = frozenset(
    {
        "id",
        "prompt",
        "messages",
        "references",
        "reference",
        "must_include",
        "forbidden",
        "tags",
        "rubric",
    }
)
CHAT_ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})

TagValue = str | int | float | bool | None


@dataclass(frozen=True)
class Pattern:
    """A fact to find in an answer: a case-insensitive substring, or a regular expression."""

    text: str
    regex: bool = False

    def __post_init__(self) -> None:
        flags = re.IGNORECASE
        compiled = re.compile(self.text if self.regex else re.escape(self.text), flags)
        object.__setattr__(self, "_compiled", compiled)

    def search(self, answer: str) -> bool:
        return self._compiled.search(answer) is not None  # type: ignore[attr-defined]

    def to_json(self) -> str | dict[str, str]:
        return {"regex": self.text} if self.regex else self.text

    def __str__(self) -> str:
        return f"/{self.text}/" if self.regex else self.text


@dataclass(frozen=True)
class GoldenItem:
    id: str
    references: tuple[str, ...]
    prompt: str | None = None
    messages: tuple[Mapping[str, Any], ...] | None = None
    must_include: tuple[Pattern, ...] = ()
    forbidden: tuple[Pattern, ...] = ()
    tags: Mapping[str, TagValue] = field(default_factory=dict)
    rubric: str | Mapping[str, Any] | None = None

    def chat_messages(self) -> list[dict[str, Any]]:
        """The request to send: the chat list, or the prompt as one user message."""
        if self.messages is not None:
            return [dict(m) for m in self.messages]
        return [{"role": "user", "content": self.prompt}]

    @property
    def question(self) -> str:
        """The text a person reads as the question: the prompt or the last user message."""
        if self.prompt is not None:
            return self.prompt
        for m in reversed(self.messages or ()):
            if m.get("role") == "user" and isinstance(m.get("content"), str):
                return str(m["content"])
        return ""

    def to_json(self) -> dict[str, Any]:
        """The canonical form: every field present, patterns and tags in a fixed shape."""
        return {
            "id": self.id,
            "prompt": self.prompt,
            "messages": [dict(m) for m in self.messages] if self.messages is not None else None,
            "references": list(self.references),
            "must_include": [p.to_json() for p in self.must_include],
            "forbidden": [p.to_json() for p in self.forbidden],
            "tags": dict(self.tags),
            "rubric": self.rubric,
        }


def _canonical(obj: Any) -> str:
    return json.dumps(
        obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False
    )


def content_hash(items: Iterable[GoldenItem]) -> str:
    ordered = sorted(items, key=lambda it: it.id)
    payload = "\n".join(_canonical(it.to_json()) for it in ordered)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class GoldenSet:
    name: str
    version: int
    items: tuple[GoldenItem, ...]

    @property
    def content_hash(self) -> str:
        cached = self.__dict__.get("_hash")
        if cached is None:
            cached = content_hash(self.items)
            object.__setattr__(self, "_hash", cached)
        return cached

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[GoldenItem]:
        return iter(self.items)

    def by_id(self) -> dict[str, GoldenItem]:
        return {it.id: it for it in self.items}

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "items": len(self.items),
            "content_hash": self.content_hash,
        }


# --------------------------------------------------------------------------- parsing


class _LineError(Exception):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


def _string_list(value: Any, name: str, *, min_items: int = 0) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise _LineError(name, "must be a list of strings")
    if len(value) < min_items:
        raise _LineError(name, f"needs at least {min_items} entry")
    for i, v in enumerate(value):
        if not isinstance(v, str):
            raise _LineError(f"{name}[{i}]", "must be a string")
    return tuple(value)


def _patterns(value: Any, name: str) -> tuple[Pattern, ...]:
    if not isinstance(value, list):
        raise _LineError(name, 'must be a list of strings or {"regex": ...} objects')
    out = []
    for i, v in enumerate(value):
        where = f"{name}[{i}]"
        if isinstance(v, str):
            if not v.strip():
                raise _LineError(where, "must not be empty")
            out.append(Pattern(v))
        elif isinstance(v, dict):
            if set(v) != {"regex"} or not isinstance(v["regex"], str) or not v["regex"]:
                raise _LineError(where, 'must be a string or an object {"regex": "..."}')
            try:
                out.append(Pattern(v["regex"], regex=True))
            except re.error as exc:
                raise _LineError(
                    f"{where}.regex", f"is not a valid regular expression: {exc}"
                ) from exc
        else:
            raise _LineError(where, 'must be a string or an object {"regex": "..."}')
    return tuple(out)


def _messages(value: Any) -> tuple[Mapping[str, Any], ...]:
    if not isinstance(value, list) or not value:
        raise _LineError("messages", 'must be a non-empty list of {"role", "content"} objects')
    for i, m in enumerate(value):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise _LineError(where, "must be an object with role and content")
        role = m.get("role")
        if role not in CHAT_ROLES:
            raise _LineError(f"{where}.role", f"must be one of {', '.join(sorted(CHAT_ROLES))}")
        content = m.get("content")
        if not isinstance(content, str | list):
            raise _LineError(f"{where}.content", "must be a string or a list of content parts")
    if value[-1].get("role") not in ("user", "tool"):
        raise _LineError(
            f"messages[{len(value) - 1}].role",
            "the last message must come from the user (or a tool)",
        )
    return tuple(value)


def _tags(value: Any) -> dict[str, TagValue]:
    if not isinstance(value, dict):
        raise _LineError("tags", "must be an object")
    for k, v in value.items():
        if v is not None and not isinstance(v, str | int | float | bool):
            raise _LineError(f"tags.{k}", "must be a string, number, boolean or null")
    return dict(value)


def parse_item(obj: Any) -> GoldenItem:
    """One item from its JSON object; raises on the first bad field."""
    if not isinstance(obj, dict):
        raise _LineError("item", "must be a JSON object")
    unknown = sorted(set(obj) - ITEM_KEYS)
    if unknown:
        known = ", ".join(sorted(ITEM_KEYS))
        raise _LineError(unknown[0], f"is not a golden-set field (known: {known})")
    item_id = obj.get("id")
    if not isinstance(item_id, str) or not item_id.strip():
        raise _LineError("id", "must be a non-empty string")

    prompt, messages = obj.get("prompt"), obj.get("messages")
    if prompt is not None and messages is not None:
        raise _LineError("prompt", "give either prompt or messages, not both")
    if prompt is None and messages is None:
        raise _LineError("prompt", "is required (or messages)")
    if prompt is not None and (not isinstance(prompt, str) or not prompt.strip()):
        raise _LineError("prompt", "must be a non-empty string")
    msgs = _messages(messages) if messages is not None else None

    if "references" in obj and "reference" in obj:
        raise _LineError("reference", "give either reference or references, not both")
    if "reference" in obj:
        ref = obj["reference"]
        if not isinstance(ref, str):
            raise _LineError("reference", "must be a string")
        references: tuple[str, ...] = (ref,)
    elif "references" in obj:
        references = _string_list(obj["references"], "references", min_items=1)
    else:
        raise _LineError("references", "is required: a list of one or more reference answers")

    rubric = obj.get("rubric")
    if rubric is not None and not isinstance(rubric, str | dict):
        raise _LineError("rubric", "must be a string or an object")
    return GoldenItem(
        id=item_id,
        prompt=prompt,
        messages=msgs,
        references=references,
        must_include=_patterns(obj.get("must_include", []), "must_include"),
        forbidden=_patterns(obj.get("forbidden", []), "forbidden"),
        tags=_tags(obj.get("tags", {})),
        rubric=rubric,
    )


def _header(obj: dict[str, Any], where: str, lineno: int) -> tuple[str, int]:
    unknown = sorted(set(obj) - HEADER_KEYS)
    if unknown:
        raise InputError(
            f"{where}: {unknown[0]}: is not a header field", field=unknown[0], line=lineno
        )
    name, version = obj.get("golden_set"), obj.get("version", 1)
    if not isinstance(name, str) or not name.strip():
        raise InputError(
            f"{where}: golden_set: must be a non-empty string", field="golden_set", line=lineno
        )
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise InputError(f"{where}: version: must be an integer >= 1", field="version", line=lineno)
    return name, version


def parse_golden(
    lines: Iterable[str], *, source: str = "golden set", default_name: str = "golden"
) -> GoldenSet:
    """A golden set from JSONL lines; errors name ``source``, the line number and the field."""
    name, version = default_name, 1
    items: list[GoldenItem] = []
    seen: dict[str, int] = {}
    first = True
    for lineno, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        where = f"{source} line {lineno}"
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InputError(
                f"{where}: not valid JSON: {exc.msg} (column {exc.colno})", line=lineno
            ) from exc
        if first and isinstance(obj, dict) and "golden_set" in obj:
            name, version = _header(obj, where, lineno)
            first = False
            continue
        first = False
        try:
            item = parse_item(obj)
        except _LineError as exc:
            raise InputError(
                f"{where}: {exc.field}: {exc.reason}", field=exc.field, line=lineno
            ) from None
        if item.id in seen:
            raise InputError(
                f"{where}: id: {item.id!r} is already used on line {seen[item.id]}",
                field="id",
                line=lineno,
            )
        seen[item.id] = lineno
        items.append(item)
    if not items:
        raise InputError(f"{source} has no items")
    return GoldenSet(name=name, version=version, items=tuple(items))


def load_golden(path: str | Path) -> GoldenSet:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read golden set {p}: {exc.strerror}", field="path") from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"golden set {p} is not UTF-8 text: {exc.reason}", field="path") from exc
    return parse_golden(text.splitlines(), source=str(p), default_name=p.stem)


def _compact_item(item: GoldenItem) -> dict[str, Any]:
    """The item as written to a file: empty optional fields left out."""
    full = item.to_json()
    out: dict[str, Any] = {"id": full["id"]}
    if item.messages is not None:
        out["messages"] = full["messages"]
    else:
        out["prompt"] = full["prompt"]
    out["references"] = full["references"]
    for key in ("must_include", "forbidden", "tags"):
        if full[key]:
            out[key] = full[key]
    if item.rubric is not None:
        out["rubric"] = item.rubric
    return out


def dump_golden(golden: GoldenSet) -> str:
    lines = [json.dumps({"golden_set": golden.name, "version": golden.version})]
    lines += [json.dumps(_compact_item(it), ensure_ascii=False) for it in golden.items]
    return "\n".join(lines) + "\n"


def write_golden(golden: GoldenSet, path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(dump_golden(golden), encoding="utf-8")
    tmp.replace(p)
    return p


# --------------------------------------------------------------------------- starter set


def starter_set(
    topics: Sequence[Any] | None = None, *, name: str = "starter", version: int = 1
) -> GoldenSet:
    """One item per question-answer pair of the simulator's corpus.

    The first phrasing of each question is the prompt, the good answer the reference and its facts
    the ``must_include`` list, tagged with topic and family. ``topics`` defaults to
    :data:`modelwarden.simulate.corpus.TOPICS`.
    """
    if topics is None:
        # lazy: importing the corpus parses data/corpus.yaml; only the starter set needs it
        from modelwarden.simulate.corpus import TOPICS

        topics = TOPICS
    items: list[GoldenItem] = []
    for topic in topics:
        for qa in topic.items:
            items.append(
                GoldenItem(
                    id=qa.key,
                    prompt=qa.questions[0],
                    references=(qa.answer,),
                    must_include=tuple(Pattern(f) for f in qa.facts),
                    tags={"topic": topic.name, "family": topic.family},
                )
            )
    ids = [it.id for it in items]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise InputError(f"the corpus yields the item id {dup!r} twice", field="id")
    if not items:
        raise InputError("the corpus has no question-answer pairs", field="topics")
    return GoldenSet(name=name, version=version, items=tuple(items))
