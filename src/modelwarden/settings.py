"""One Settings object for a ModelWarden installation; everything else takes explicit arguments."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, Field

DEFAULT_DATA_DIR = "./warden-data"
ENV_DATA = "MODELWARDEN_DATA"
ENV_EMBEDDER = "MODELWARDEN_EMBEDDER"
ENV_THREADS = "MODELWARDEN_EMBED_THREADS"


class Settings(BaseModel):
    """Where data lives and how it is processed.

    ``embedder`` names the default embedder: ``minilm`` (all-MiniLM-L6-v2, the real model) or
    ``hashing`` (a fast feature-hashing embedder for tests and smoke runs).
    """

    data_dir: Path = Field(default=Path(DEFAULT_DATA_DIR))
    embedder: str = "minilm"
    embed_threads: int = Field(
        default=0, ge=0, description="0 means half the available cores, at least one"
    )
    embed_batch_size: int = Field(default=64, ge=1, le=4096)
    safety_rules: Path | None = Field(
        default=None, description="YAML or text file of safety patterns; None uses the defaults"
    )

    @classmethod
    def from_env(cls, data_dir: str | Path | None = None, **overrides: object) -> Settings:
        """Settings from explicit values first, then ``MODELWARDEN_*`` variables, then defaults."""
        values: dict[str, object] = {}
        data = data_dir or os.environ.get(ENV_DATA) or DEFAULT_DATA_DIR
        values["data_dir"] = Path(data)
        if os.environ.get(ENV_EMBEDDER):
            values["embedder"] = os.environ[ENV_EMBEDDER]
        if os.environ.get(ENV_THREADS):
            values["embed_threads"] = int(os.environ[ENV_THREADS])
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(values)

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "log"

    @property
    def reports_dir(self) -> Path:
        return self.data_dir / "reports"

    @property
    def state_db(self) -> Path:
        return self.data_dir / "state.db"

    def threads(self) -> int:
        # Half the cores by default: embedding is background work beside the server and the
        # queries, and torch's threads wait by spinning, so on busy cores two threads embed up to
        # ten times slower than one (bench/embed).
        return self.embed_threads or max(1, (os.cpu_count() or 1) // 2)
