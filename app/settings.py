"""`Settings`: every server option, from flags or `STREAMRAG_*` environment variables."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """One object for the whole server; `create_app(settings)` takes it, tests build their own.

    model: "default" (SmolLM2-135M-Instruct), "tiny" (the random-weight test model) or a path.
    data_dir: where the embedded Qdrant lives (None: STREAMRAG_DATA_DIR or ./data).
    qdrant_url: a Qdrant server instead of the embedded store; ":memory:" for throw-away tests.
    api_key: when set, every route but /health needs `Authorization: Bearer <api_key>`.
    retrieval: load the embedding model and Qdrant (off: chat/completions/sessions only).
    policy: the engine's scheduling policy (engine/policies.py); "fcfs" puts sessions whose
        context is complete first and lets waiting sessions give KV back under memory
        pressure; "vllm" is stock vLLM's order, which can jam when idle sessions fill the cache.
    vllm_urls: vLLM OpenAI-compatible servers to use instead of the in-process engine (the
        remote backend: prefix warming, one replica per session); `model` must name the same
        model's folder here, for the tokenizer. From the environment: a JSON list.
    """

    model_config = SettingsConfigDict(env_prefix="STREAMRAG_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    model: str = "default"
    served_model_name: str | None = None
    data_dir: str | None = None
    cache_dir: str | None = None
    qdrant_url: str | None = None
    vllm_urls: list[str] = Field(default_factory=list)
    api_key: str | None = None
    retrieval: bool = True
    embedding_model: str | None = None
    session_ttl_s: float = Field(300.0, gt=0)
    max_sessions: int = Field(256, ge=1)
    max_model_len: int = Field(8192, ge=64)
    block_size: int = 128
    kv_cache_gib: float = Field(2.0, gt=0)
    policy: Literal["vllm", "fcfs", "lcas", "mcps"] = "fcfs"
    max_tokens_default: int = Field(256, ge=1)
    record_steps: bool = False
    restart: bool = True  # restart a dead engine (False: exit with status 3 for a process supervisor)

    @property
    def model_name(self) -> str:
        return self.served_model_name or (
            "smollm2-135m-instruct" if self.model == "default" else self.model.rstrip("/").split("/")[-1]
        )
