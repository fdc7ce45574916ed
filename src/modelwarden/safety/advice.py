"""The similarity part of the safety check: answer sentences close to curated unsafe advice.

Patterns catch the phrasings someone wrote down; paraphrases slip past them. This part embeds
each sentence of an answer and compares it with a curated set of unsafe advice and of safe advice
on the same subjects (``data/unsafe_advice.yaml``: lockout/tagout, stored energy, chemical
mixing, PPE). A sentence counts when its nearest example is an unsafe one at or above the
embedder's threshold. Questions ("Can I mix two cleaners?") ask rather than advise and are left
out.

The embedder is any object with ``name`` and ``embed(texts) -> unit vectors`` (see
:mod:`modelwarden.embed`). Only an embedder with a threshold in the data file takes part: the
hashing embedder measures shared words, not meaning, so with it :attr:`AdviceSimilarity.available`
is False, :attr:`AdviceSimilarity.reason` says why, and only the patterns judge.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from modelwarden.errors import InputError

# Package data beside this package (importing the package root would import every feature).
PACKAGED_ADVICE = Path(__file__).resolve().parent.parent / "data" / "unsafe_advice.yaml"

# Distinct answer sentences whose vectors a checker keeps (384 floats each: about 6 MB).
SENTENCE_MEMO = 4096
_SENTENCE = re.compile(r"(?<=[.!?;])\s+|\n+")


@dataclass(frozen=True)
class AdviceSet:
    """Examples by category, and the similarity threshold per embedder name prefix."""

    unsafe: tuple[tuple[str, str], ...]  # (category, text)
    safe: tuple[tuple[str, str], ...]
    thresholds: dict[str, float]

    @classmethod
    def load(cls, path: Path | None = None) -> AdviceSet:
        if path is None:
            path = PACKAGED_ADVICE
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise InputError(f"cannot read {path}: {exc.strerror}", field="advice") from exc
        where = str(path)
        data = yaml.safe_load(text) or {}
        cats = data.get("categories")
        if not isinstance(cats, dict) or not cats:
            raise InputError(f"{where}: 'categories' must be a non-empty mapping", field="advice")
        unsafe: list[tuple[str, str]] = []
        safe: list[tuple[str, str]] = []
        for name, body in cats.items():
            for kind, out in (("unsafe", unsafe), ("safe", safe)):
                items = (body or {}).get(kind, [])
                if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
                    raise InputError(
                        f"{where}: categories.{name}.{kind} must be a list of strings",
                        field=f"categories.{name}.{kind}",
                    )
                out.extend((str(name), x) for x in items)
        if not unsafe:
            raise InputError(f"{where}: no unsafe examples", field="categories")
        thresholds = {str(k): float(v) for k, v in (data.get("thresholds") or {}).items()}
        return cls(tuple(unsafe), tuple(safe), thresholds)

    @property
    def categories(self) -> list[str]:
        return list(dict.fromkeys(c for c, _ in self.unsafe))


@dataclass(frozen=True)
class AdviceHit:
    category: str
    example: str
    similarity: float
    sentence: str

    @property
    def label(self) -> str:
        """How a hit is named beside the patterns a text matches."""
        return f"similar to unsafe advice ({self.category}): {self.example}"


def sentences(text: str) -> list[str]:
    """The sentences of an answer that advise: questions and fragments left out."""
    out = []
    for s in _SENTENCE.split(text):
        s = s.strip()
        if len(s.split()) >= 3 and not s.endswith("?"):
            out.append(s)
    return out


class AdviceSimilarity:
    """Nearest-example check of answer sentences against :class:`AdviceSet`."""

    def __init__(self, embedder: Any, advice: AdviceSet | None = None) -> None:
        self.advice = advice or AdviceSet.load()
        self.embedder = embedder
        name = str(getattr(embedder, "name", ""))
        self.threshold = next(
            (t for prefix, t in self.advice.thresholds.items() if name.startswith(prefix)), None
        )
        self.available = self.threshold is not None
        self.reason = (
            f"on: {name}, threshold {self.threshold}"
            if self.available
            else f"off: the {name or 'given'} embedder has no threshold for similarity to unsafe "
            "advice (the hashing embedder compares shared words, not meaning); only the patterns "
            "judge. Use the minilm embedder to turn it on."
        )
        self._unsafe: np.ndarray | None = None
        self._safe: np.ndarray | None = None
        self._memo: dict[str, np.ndarray] = {}

    def _examples(self) -> tuple[np.ndarray, np.ndarray]:
        if self._unsafe is None or self._safe is None:
            texts = [t for _, t in self.advice.unsafe] + [t for _, t in self.advice.safe]
            vecs = np.asarray(self.embedder.embed(texts), dtype=np.float32)
            n = len(self.advice.unsafe)
            self._unsafe, self._safe = vecs[:n], vecs[n:]
        return self._unsafe, self._safe

    def _vectors(self, sentences_: list[str]) -> np.ndarray:
        """The sentences' vectors; each distinct sentence is embedded once per checker.

        A model's answers repeat their sentences (the gateway checks every answer as it passes),
        so the vectors of the last :data:`SENTENCE_MEMO` distinct sentences are kept.
        """
        known = {t: self._memo[t] for t in sentences_ if t in self._memo}
        todo = [t for t in dict.fromkeys(sentences_) if t not in known]
        if todo:
            fresh = np.asarray(self.embedder.embed(todo), dtype=np.float32)
            known.update(zip(todo, fresh, strict=True))
            if len(self._memo) + len(todo) > SENTENCE_MEMO:
                self._memo.clear()
            self._memo.update(zip(todo, fresh, strict=True))
        return np.stack([known[t] for t in sentences_])

    def hits(self, texts: list[str | None]) -> list[AdviceHit | None]:
        """The closest unsafe example each text's sentences come to, if one counts."""
        out: list[AdviceHit | None] = [None] * len(texts)
        if not self.available:
            return out
        where: list[tuple[int, str]] = [
            (i, s) for i, t in enumerate(texts) if t for s in sentences(t)
        ]
        if not where:
            return out
        unsafe, safe = self._examples()
        vecs = self._vectors([s for _, s in where])
        su = vecs @ unsafe.T
        ss = vecs @ safe.T if len(safe) else np.full((len(where), 1), -1.0, np.float32)
        best_u, top_u, top_s = su.argmax(axis=1), su.max(axis=1), ss.max(axis=1)
        assert self.threshold is not None
        for k, (i, sentence) in enumerate(where):
            sim = float(top_u[k])
            if sim < self.threshold or sim <= float(top_s[k]):
                continue
            cat, example = self.advice.unsafe[int(best_u[k])]
            hit = AdviceHit(cat, example, round(sim, 4), sentence)
            if out[i] is None or hit.similarity > out[i].similarity:  # type: ignore[union-attr]
                out[i] = hit
        return out

    def hit(self, text: str | None) -> AdviceHit | None:
        return self.hits([text])[0]


__all__ = ["AdviceHit", "AdviceSet", "AdviceSimilarity", "sentences"]
