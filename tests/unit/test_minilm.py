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
    # one: the count is the calling embedder's, and the vectors do not depend on it.
    import torch

    one, two = MiniLMEmbedder(threads=1), MiniLMEmbedder(threads=2)
    texts = ["Lock out the press before clearing a jam.", "How often is the conveyor oiled?"]
    a = one.embed(texts)
    assert torch.get_num_threads() == 1
    b = two.embed(texts)
    assert torch.get_num_threads() == 2
    np.testing.assert_allclose(a, b, atol=1e-5)
