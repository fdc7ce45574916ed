"""The real default embedder: loads offline from its wheel and gives meaningful unit vectors."""

from __future__ import annotations

import numpy as np
import pytest

from modelwarden.embed import MiniLMEmbedder, get_embedder


@pytest.fixture(scope="module")
def minilm() -> MiniLMEmbedder:
    return MiniLMEmbedder(threads=2)


@pytest.mark.slow
def test_vectors_are_384_d_unit_length_and_order_preserving(minilm: MiniLMEmbedder) -> None:
    texts = [
        "What is the lubrication schedule for the main conveyor?",
        "How often should the main conveyor be greased?",
        "How do I respond to thermal runaway in a lithium forklift battery?",
        "ok",
    ]
    v = minilm.embed(texts, batch_size=2)
    assert v.shape == (4, 384) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    sim = v @ v.T
    # Two phrasings of one question are closer than a question about another topic.
    assert sim[0, 1] > sim[0, 2] + 0.2
    # Length-sorted batching must not change which vector belongs to which text.
    alone = minilm.embed([texts[2]], batch_size=1)
    assert np.allclose(alone[0], v[2], atol=1e-5)


def test_get_embedder_names() -> None:
    assert get_embedder("minilm").name == "all-MiniLM-L6-v2"
    assert get_embedder("hashing").dim == 384
    assert get_embedder("hashing-64").dim == 64


@pytest.mark.slow
def test_each_embedder_encodes_with_its_own_thread_count(minilm: MiniLMEmbedder) -> None:
    # One model per process, but a batch job may use every core while the gateway's check uses
    # one: the count is the calling embedder's.
    import torch

    one, two = MiniLMEmbedder(threads=1), MiniLMEmbedder(threads=2)
    a = one.embed(["Lock out the press before clearing a jam."])
    assert torch.get_num_threads() == 1
    b = two.embed(["Lock out the press before clearing a jam!"])
    assert torch.get_num_threads() == 2
    assert float(a[0] @ b[0]) > 0.95


@pytest.mark.slow
def test_repeated_texts_are_encoded_once_and_kept(minilm: MiniLMEmbedder) -> None:
    from modelwarden.embed import minilm as module

    texts = [
        "Where is the eyewash station?",
        "Who signs the permit?",
        "Where is the eyewash station?",
    ]
    seen: list[int] = []
    vecs = minilm.embed(texts, progress=seen.append)
    assert sum(seen) == len(texts)
    np.testing.assert_array_equal(vecs[0], vecs[2])
    memo = module._MEMOS["cpu"]
    np.testing.assert_array_equal(memo["Who signs the permit?"], vecs[1])
    # A later call, from any embedder of the process, answers from what was kept.
    again = MiniLMEmbedder(threads=1).embed(["Who signs the permit?"], progress=seen.append)
    np.testing.assert_array_equal(again[0], vecs[1])
    assert sum(seen) == len(texts) + 1
