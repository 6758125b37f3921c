"""`Settings`: every server option, from `streamrag serve` flags or `STREAMRAG_*` variables.

The flags are not declared by hand: `streamrag serve` builds them from this class with
pydantic-settings' CLI support (app/commands/serve.py), so `serve --help` lists every field
below with its description, its environment variable and its default.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from engine.config import Policy


class Settings(BaseSettings):
    """One object for the whole server; `create_app(settings)` takes it, tests build their own."""

    model_config = SettingsConfigDict(env_prefix="STREAMRAG_", extra="ignore", use_attribute_docstrings=False)

    host: str = Field("127.0.0.1", description="address to listen on")
    port: int = Field(8000, ge=0, le=65535, description="port to listen on")
    model: str = Field("default", description='"default" (SmolLM2-135M-Instruct), "gemma3-270m" (Gemma 3 270M, '
                                              'once prepared), "tiny" (test model) or a Hugging Face model folder')
    served_model_name: str | None = Field(None, description="the model name clients send (unset: from the model)")
    data_dir: str | None = Field(None, description="where the embedded Qdrant keeps its data (unset: ./data)")
    cache_dir: str | None = Field(None, description="where prepared models live (unset: ./.cache)")
    qdrant_url: str | None = Field(None, description='a Qdrant server instead of the embedded store (":memory:" '
                                                     "for throw-away data)")
    vllm_url: list[str] = Field(default_factory=list, description="a vLLM OpenAI server to use instead of the "
                                 "in-process engine (repeat for replicas; prefix warming, one replica per session)")
    api_key: str | None = Field(None, description="require `Authorization: Bearer KEY` on every route but /health")
    metrics_auth: bool = Field(False, description="require the API key on /metrics too (open by default, as "
                                                  "vLLM's server has it)")
    retrieval: bool = Field(True, description="load the embedding model and Qdrant (off: chat, completions and "
                                              "sessions only)")
    embedding_model: str | None = Field(None, description="a sentence-transformers folder (unset: the packaged "
                                                          "all-MiniLM-L6-v2)")
    reranker_model: str | None = Field(None, description="a cross-encoder folder (Hugging Face sequence "
                                                         "classification): retrieval's last stage reranks with it "
                                                         "(unset: dense and hybrid stages only)")
    max_model_len: int | None = Field(None, ge=64, description="context length of the in-process engine "
                                                                "(unset: the model's own)")
    block_size: int = Field(128, ge=1, description="KV block size in tokens (CPU: a multiple of 32)")
    kv_cache_gib: float = Field(2.0, gt=0, description="KV cache memory of the in-process engine")
    cpu_cores: str | None = Field(None, description='CPU cores the in-process engine computes on ("0-3"; unset: '
                                  "vLLM's choice, every core but one kept for its scheduler process)")
    busy_poll: bool | None = Field(None, description="let vLLM's engine core and worker spin on their shared queues "
                                                     "(unset: off on CPU, on elsewhere)")
    policy: Policy = Field("fcfs", description="scheduling policy: fcfs, lcas, mcps, or vllm (stock vLLM's order)")
    restart: bool = Field(True, description="restart a dead engine (--no-restart: exit with status 3 instead)")
    record_steps: bool = Field(False, description="record vLLM's per-step scheduled tokens in the ledger (tests)")
    max_tokens_default: int = Field(256, ge=1, description="max_tokens when a request gives none")
    max_tokens_limit: int | None = Field(None, ge=1, description="the most max_tokens a request may ask for "
                                                                 "(unset: what the context leaves)")
    session_ttl_s: float = Field(300.0, gt=0, description="end a session that sees no work for this long")
    max_sessions: int = Field(256, ge=1, description="open sessions at most (429 beyond)")
    max_body_bytes: int = Field(4 * 2**20, ge=1024, description="largest request body (413 beyond)")
    max_messages: int = Field(256, ge=1, description="most chat messages in one request")
    max_chars: int = Field(200_000, ge=100, description="most characters of text in one request (messages, "
                                                        "prompt, question, chunks)")
    vllm_log_level: str = Field("WARNING", pattern="^(DEBUG|INFO|WARNING|ERROR|debug|info|warning|error)$",
                                description="vLLM's log level; its known-harmless start-up warnings are dropped "
                                            "(app/quiet_logs.py; VLLM_LOGGING_LEVEL in the environment sets the "
                                            "level, VLLM_LOGGING_CONFIG_PATH replaces it all)")
    drain_s: float = Field(10.0, ge=0, description="on SIGTERM, how long live streams get to end before exit")
    stop_with_parent: bool = Field(False, description="stop as on SIGTERM when the process that started the server "
                                   "exits, however it ends (for benches and tests that start a server of their own)")

    @property
    def model_name(self) -> str:
        return self.served_model_name or (
            "smollm2-135m-instruct" if self.model == "default" else self.model.rstrip("/").split("/")[-1]
        )

