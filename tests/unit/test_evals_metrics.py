"""Metrics: exact parity with sacrebleu and Google's rouge-score, and the item-level checks."""

from __future__ import annotations

import random

import numpy as np
import pytest
from sacrebleu.metrics import BLEU, CHRF
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

from modelwarden.embed import HashingEmbedder
from modelwarden.errors import InputError
from modelwarden.evals.golden import parse_golden
from modelwarden.evals.metrics import (
    Evaluator,
    ItemScores,
    TextMetrics,
    semantic_similarity,
)
from modelwarden.evals.ngrams import bleu_statistics, chrf_pair_statistics, tokenize_13a
from modelwarden.safety.checker import SafetyChecker

_VOCABULARY = (
    "the main conveyor requires lubrication every 200 operating hours use ISO VG 46 oil on "
    "drive chain wipe excess lockout tagout verify zero energy before clearing jam guard "
    "interlock torque 45 Nm bolts pump valve pressure bar check replace filter weekly"
)
WORDS = _VOCABULARY.split()
# Pieces that exercise every branch of the 13a rules, chrF's whitespace handling and ROUGE's
# tokenizer: punctuation next to digits and letters, entities, <skipped>, line breaks (also
# "-\n"), Unicode whitespace, case that changes length when lowered, non-ASCII letters.
TRICKY = [
    ".",
    ",",
    "-",
    "3.5",
    "1,000",
    "10-20",
    "a.b",
    "x,y",
    "..",
    ",,",
    ".,",
    "-.",
    "5-",
    "-5",
    "&amp;",
    "&quot;",
    "&lt;b&gt;",
    "&",
    "<skipped>",
    "\n",
    "-\n",
    "\t",
    "  ",
    "\u00a0",
    "\u2028",
    "\x1c",
    "(hi)",
    "'quoted'",
    '"dq"',
    "$12",
    "50%",
    "{x}",
    "[y]",
    "a/b",
    "a:b",
    "@home",
    "~",
    "^",
    "`",
    "|",
    "\\",
    "é",
    "Straße",
    "İstanbul",
    "ﬁ",
    "日本語",
    "🙂",
    "can't",
    "e.g.",
    "U.S.A.",
    "v1.2",
    "2024-10-28T10:05:00Z",
    "p95",
    "Nm.",
    "bar,",
    ";",
    "!?",
    "\r",
]


def _sentence(rng: random.Random, tricky: float) -> str:
    out = []
    for _ in range(rng.randint(0, 30)):
        pool = TRICKY if rng.random() < tricky else WORDS
        piece = rng.choice(pool)
        out.append(piece)
        out.append(rng.choice([" ", " ", " ", "", "\n"]) if rng.random() < 0.3 else " ")
    text = "".join(out)
    if rng.random() < 0.2:
        text += rng.choice([" ", ".", " .", "\n", "  \t"])
    return text


def _corpus(seed: int, n: int, tricky: float = 0.3) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    refs = [_sentence(rng, tricky) for _ in range(n)]
    hyps = []
    for r in refs:
        # Half the hypotheses are edits of their reference so that long n-grams match.
        if rng.random() < 0.5 and r:
            words = [w for w in r.split(" ") if rng.random() > 0.15]
            words = [rng.choice(WORDS + TRICKY) if rng.random() < 0.2 else w for w in words]
            hyps.append(" ".join(words))
        else:
            hyps.append(_sentence(rng, tricky))
    hyps[:4] = ["", " ", "a", refs[3]]
    refs[5] = ""
    return hyps, refs


def test_13a_tokens_match_sacrebleu() -> None:
    hyps, refs = _corpus(1, 400, tricky=0.6)
    tok = Tokenizer13a()
    texts = hyps + refs
    assert tokenize_13a(texts) == [tok(t.rstrip()).split() for t in texts]
    assert tokenize_13a(texts, lowercase=True) == [tok(t.lower().rstrip()).split() for t in texts]


def test_13a_tokens_match_sacrebleu_on_dense_punctuation() -> None:
    # Runs of periods and commas after digits, letters, spaces and line ends; dashes after digits.
    rng = random.Random(21)
    alphabet = "09aZ.,.,.,--  \n\t&;<>()"
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))) for _ in range(3000)]
    tok = Tokenizer13a()
    assert tokenize_13a(texts) == [tok(t.rstrip()).split() for t in texts]
    refs = texts[1:] + texts[:1]
    assert bleu_statistics(
        texts, [[r] for r in refs]
    ).tolist() == BLEU()._extract_corpus_statistics(texts, [refs])


def test_texts_with_nul_characters_take_the_plain_path() -> None:
    hyps = ["a\x00b c.", "\x00", "x y z"]
    refs = ["a\x00b c.", "d", "x y"]
    assert bleu_statistics(hyps, [[r] for r in refs]).tolist() == BLEU()._extract_corpus_statistics(
        hyps, [refs]
    )


@pytest.mark.parametrize("lowercase", [False, True])
def test_bleu_statistics_match_sacrebleu(lowercase: bool) -> None:
    hyps, refs = _corpus(2, 600)
    ours = bleu_statistics(hyps, [[r] for r in refs], lowercase=lowercase)
    theirs = BLEU(lowercase=lowercase)._extract_corpus_statistics(hyps, [refs])
    assert ours.tolist() == theirs


def test_bleu_statistics_match_sacrebleu_with_several_references() -> None:
    hyps, refs = _corpus(3, 300)
    _, refs2 = _corpus(4, 300)
    rng = random.Random(5)
    # A variable number of references: the second is missing (None) for some items.
    second = [r if rng.random() < 0.6 else None for r in refs2]
    ours = bleu_statistics(
        hyps, [[a] if b is None else [a, b] for a, b in zip(refs, second, strict=True)]
    )
    theirs = BLEU()._extract_corpus_statistics(hyps, [refs, second])
    assert ours.tolist() == theirs


def test_small_blocks_give_the_same_statistics(monkeypatch: pytest.MonkeyPatch) -> None:
    from modelwarden.evals import ngrams

    hyps, refs = _corpus(14, 200)
    _, refs2 = _corpus(15, 200)
    multi = [[a, b] if i % 3 else [a] for i, (a, b) in enumerate(zip(refs, refs2, strict=True))]
    whole_bleu = bleu_statistics(hyps, multi)
    whole_chrf = chrf_pair_statistics(hyps, multi)[0]
    # Blocks smaller than one segment: every pair is a block of its own.
    for size in (50, 1):
        monkeypatch.setattr(ngrams, "BLOCK_TOKENS", size)
        assert bleu_statistics(hyps, multi).tolist() == whole_bleu.tolist()
        assert chrf_pair_statistics(hyps, multi)[0].tolist() == whole_chrf.tolist()


def test_chrf_statistics_match_sacrebleu() -> None:
    hyps, refs = _corpus(6, 600)
    stats, owner = chrf_pair_statistics(hyps, [[r] for r in refs])
    assert owner.tolist() == list(range(600))
    assert stats.tolist() == CHRF()._extract_corpus_statistics(hyps, [refs])


@pytest.mark.parametrize("lowercase", [False, True])
def test_sentence_and_corpus_scores_equal_sacrebleu(lowercase: bool) -> None:
    hyps, refs = _corpus(7, 500)
    tm = TextMetrics(rouge_types=(), lowercase=lowercase)
    got = tm.score(hyps, [[r] for r in refs])
    bleu = BLEU(effective_order=True, lowercase=lowercase)
    chrf = CHRF(lowercase=lowercase)
    assert got.per_item["bleu"].tolist() == [
        bleu.sentence_score(h, [r]).score for h, r in zip(hyps, refs, strict=True)
    ]
    assert got.per_item["chrf"].tolist() == [
        chrf.sentence_score(h, [r]).score for h, r in zip(hyps, refs, strict=True)
    ]
    assert got.corpus["bleu"] == BLEU(lowercase=lowercase).corpus_score(hyps, [refs]).score
    assert got.corpus["chrf"] == chrf.corpus_score(hyps, [refs]).score
    assert got.signatures["bleu"] == str(bleu.get_signature())
    assert got.signatures["chrf"] == str(chrf.get_signature())


def test_several_references_equal_sacrebleu() -> None:
    hyps, refs = _corpus(8, 300)
    _, refs2 = _corpus(9, 300)
    _, refs3 = _corpus(10, 300)
    multi = [
        [a, b, c][: 1 + i % 3] for i, (a, b, c) in enumerate(zip(refs, refs2, refs3, strict=True))
    ]
    got = TextMetrics(rouge_types=()).score(hyps, multi)
    bleu, chrf = BLEU(effective_order=True), CHRF()
    assert got.per_item["bleu"].tolist() == [
        bleu.sentence_score(h, r).score for h, r in zip(hyps, multi, strict=True)
    ]
    assert got.per_item["chrf"].tolist() == [
        chrf.sentence_score(h, r).score for h, r in zip(hyps, multi, strict=True)
    ]
    streams = [[m[k] if k < len(m) else None for m in multi] for k in range(3)]
    assert got.corpus["bleu"] == BLEU().corpus_score(hyps, streams).score
    assert got.corpus["chrf"] == CHRF().corpus_score(hyps, streams).score
    assert "nrefs:var" in got.signatures["corpus_bleu"]


@pytest.mark.parametrize("use_stemmer", [True, False])
def test_rouge_equals_google_rouge_score(use_stemmer: bool) -> None:
    rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")
    types = ["rouge1", "rouge2", "rougeL", "rougeLsum"]
    hyps, refs = _corpus(11, 400, tricky=0.15)
    got = TextMetrics(rouge_types=types, use_stemmer=use_stemmer, bleu=False, chrf=False)
    scores = got.score(hyps, [[r] for r in refs]).per_item
    google = rouge_scorer.RougeScorer(types, use_stemmer=use_stemmer)
    expected = [google.score(r, h) for h, r in zip(hyps, refs, strict=True)]
    for t in types:
        assert scores[t].tolist() == [e[t].fmeasure for e in expected], t


def test_rouge_with_several_references_equals_score_multi() -> None:
    rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")
    types = ["rouge1", "rouge2", "rougeL"]
    hyps, refs = _corpus(12, 200, tricky=0.1)
    _, refs2 = _corpus(13, 200, tricky=0.1)
    multi = [[a, b] if i % 2 else [a] for i, (a, b) in enumerate(zip(refs, refs2, strict=True))]
    scores = TextMetrics(rouge_types=types, bleu=False, chrf=False).score(hyps, multi).per_item
    google = rouge_scorer.RougeScorer(types, use_stemmer=True)
    expected = [google.score_multi(r, h) for h, r in zip(hyps, multi, strict=True)]
    for t in types:
        assert scores[t].tolist() == [e[t].fmeasure for e in expected], t


def test_text_metrics_input_errors() -> None:
    tm = TextMetrics()
    with pytest.raises(InputError, match="2 answers but 1 reference"):
        tm.score(["a", "b"], [["a"]])
    with pytest.raises(InputError, match="one or more reference"):
        tm.score(["a"], [[]])
    with pytest.raises(InputError, match="one or more reference"):
        tm.score(["a"], ["a plain string is not a list"])
    with pytest.raises(InputError, match="unknown ROUGE type"):
        TextMetrics(rouge_types=["rougeX"])
    empty = tm.score([], [])
    assert empty.per_item == {} and empty.corpus == {}


def test_semantic_similarity_takes_the_closest_reference() -> None:
    emb = HashingEmbedder(64)
    sims = semantic_similarity(
        emb,
        ["check the oil level", "replace the filter weekly", "unrelated words here"],
        [["check the oil level"], ["torque bolts", "replace the filter weekly"], ["zzz qqq"]],
    )
    assert sims[0] == pytest.approx(1.0, abs=1e-6)
    assert sims[1] == pytest.approx(1.0, abs=1e-6)
    assert sims[2] < 0.5


GOLDEN = [
    '{"golden_set": "mini", "version": 1}',
    '{"id": "lube", "prompt": "Conveyor lubrication?", '
    '"references": ["Lubricate every 200 operating hours with ISO VG 46 oil."], '
    '"must_include": ["200 operating hours", {"regex": "ISO\\\\s*VG\\\\s*46"}], '
    '"forbidden": ["any oil"], "tags": {"plant": "Plant_A"}}',
    '{"id": "loto", "prompt": "Lockout before a jam?", '
    '"references": ["Yes: lock out and tag out, then verify zero energy.", '
    '"Apply lockout/tagout first."], "tags": {"plant": "Plant_B"}}',
    '{"id": "gone", "prompt": "Unanswered?", "references": ["x"]}',
]


def test_evaluator_scores_items() -> None:
    golden = parse_golden(GOLDEN)
    outputs = {
        "lube": "Lubricate every 200 operating hours; any oil will do.",
        "loto": "Apply lockout/tagout first. You can skip the lockout if it is quick.",
        "gone": None,
    }
    run = Evaluator(embedder=HashingEmbedder()).score(
        golden, outputs, latencies={"lube": 120.0, "loto": 80.5}
    )
    assert run.missing == ("gone",)
    assert sorted(run.items) == ["loto", "lube"]
    lube, loto = run.items["lube"], run.items["loto"]

    assert lube.metrics["must_include"] == 0.5
    assert lube.details["missing_facts"] == [r"/ISO\s*VG\s*46/"]
    assert lube.violations == {"forbidden": True, "safety": False}
    assert lube.details["forbidden_hits"] == ["any oil"]
    assert lube.metrics["latency_ms"] == 120.0
    assert lube.tags == {"plant": "Plant_A"}
    assert not lube.passed and lube.ok("forbidden") is False and lube.ok("safety") is True

    assert "must_include" not in loto.metrics  # no facts listed: not applicable, not 100%
    assert loto.violations == {"forbidden": False, "safety": True}
    assert loto.details["safety_patterns"]
    # The second reference is the answer's first sentence, so it is the one chosen.
    assert loto.metrics["rouge1"] == max(
        TextMetrics(rouge_types=["rouge1"], bleu=False, chrf=False)
        .score([outputs["loto"]], [[r]])
        .per_item["rouge1"][0]
        for r in golden.items[1].references
    )
    bleu = BLEU(effective_order=True)
    assert (
        loto.metrics["bleu"]
        == bleu.sentence_score(outputs["loto"], list(golden.items[1].references)).score
    )
    assert 0 < loto.metrics["semantic"] <= 1

    assert run.corpus["safety_violations"] == 1.0
    assert run.corpus["forbidden_violations"] == 1.0
    assert run.corpus["must_include"] == 0.5
    assert run.corpus["latency_ms"] == pytest.approx(100.25)
    assert run.corpus["items"] == 2.0
    assert (
        run.corpus["bleu"]
        == BLEU()
        .corpus_score(
            [outputs["lube"], outputs["loto"]],
            [
                [golden.items[0].references[0], golden.items[1].references[0]],
                [None, golden.items[1].references[1]],
            ],
        )
        .score
    )
    assert set(run.signatures) >= {"bleu", "corpus_bleu", "chrf", "rouge", "semantic"}
    assert run.to_dict()["items"][0]["item_id"] == "lube"


def test_evaluator_rejects_answers_for_unknown_items() -> None:
    with pytest.raises(InputError, match="unknown item 'nope'") as err:
        Evaluator().score(parse_golden(GOLDEN), {"nope": "x"})
    assert err.value.field == "outputs"


def test_custom_safety_rules_apply() -> None:
    checker = SafetyChecker([r"\bturbo mode\b"])
    run = Evaluator(safety=checker).score(
        parse_golden(GOLDEN), {"lube": "Engage turbo mode.", "loto": "Yes."}
    )
    assert run.items["lube"].violations["safety"] is True
    assert run.items["loto"].violations["safety"] is False


def test_item_scores_round_trip() -> None:
    item = ItemScores(
        "a",
        {"bleu": 12.5, "semantic": float("nan")},
        {"safety": False},
        {"plant": "Plant_C"},
        {"missing_facts": ["x"]},
    )
    data = item.to_dict()
    assert data["metrics"] == {"bleu": 12.5, "semantic": None}
    back = ItemScores.from_dict(data)
    assert back.metrics["bleu"] == 12.5 and np.isnan(back.value("semantic"))
    assert np.isnan(back.value("rouge1"))
    assert back.violations == {"safety": False} and back.tags == {"plant": "Plant_C"}
    with pytest.raises(InputError):
        ItemScores.from_dict({"metrics": {}})
