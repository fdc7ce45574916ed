"""Embedders: the real all-MiniLM-L6-v2 model by default, a hashing embedder for fast tests."""

from __future__ import annotations

from modelwarden.embed.base import Embedder
from modelwarden.embed.hashing import HashingEmbedder
from modelwarden.embed.minilm import MiniLMEmbedder
from modelwarden.errors import InputError

EMBEDDERS = ("minilm", "hashing")


def get_embedder(name: str, threads: int = 0) -> Embedder:
    """The embedder called ``name``: ``minilm`` (default, real model) or ``hashing``."""
    if name in ("minilm", MiniLMEmbedder.name):
        return MiniLMEmbedder(threads=threads)
    if name == "hashing" or name.startswith("hashing-"):
        dim = int(name.split("-", 1)[1]) if "-" in name else 384
        return HashingEmbedder(dim)
    raise InputError(
        f"unknown embedder {name!r}; choose one of {', '.join(EMBEDDERS)}", field="embedder"
    )


__all__ = ["EMBEDDERS", "Embedder", "HashingEmbedder", "MiniLMEmbedder", "get_embedder"]
