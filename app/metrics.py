"""`Metrics`: Prometheus counters of one app (its own registry: no process-global state)."""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from app.runs import Finish

TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("streamrag_requests", "HTTP requests by route and status", ["route", "status"], registry=r)
        self.ttft = Histogram("streamrag_ttft_seconds", "Time to first token from the request", buckets=TTFT_BUCKETS, registry=r)
        self.reused = Counter("streamrag_tokens_reused", "Prompt tokens whose KV an update kept (LCP)", registry=r)
        self.recomputed = Counter("streamrag_tokens_recomputed", "Prompt tokens computed a second time", registry=r)
        self.prefilled_early = Counter("streamrag_tokens_prefilled_before_gate", "Prompt tokens prefilled before the gate", registry=r)
        self.sessions = Gauge("streamrag_active_sessions", "Engine sessions alive now", registry=r)
        self.kv_blocks = Gauge("streamrag_kv_blocks_in_use", "KV blocks vLLM holds now", registry=r)
        self.preemptions = Gauge("streamrag_preemptions", "Idle sessions preempted so far, by mode", ["mode"], registry=r)
        self.preempted_tokens = Gauge("streamrag_preempted_tokens", "KV tokens given back by preempted sessions", registry=r)
        self.preempted_seconds = Gauge("streamrag_preempted_seconds", "Time resumed sessions spent preempted", registry=r)

    def observe(self, finish: Finish) -> None:
        s = finish.streamrag
        if (ttft := s.get("ttft_from_request_ms")) is not None:
            self.ttft.observe(ttft / 1000)
        self.reused.inc(s.get("reused_tokens", 0))
        self.recomputed.inc(s.get("recomputed_tokens", 0))
        self.prefilled_early.inc(s.get("prefilled_before_gate", 0))

    def render(self, live_sessions: int, kv_blocks_in_use: int, preemption=None) -> bytes:
        self.sessions.set(live_sessions)
        self.kv_blocks.set(kv_blocks_in_use)
        if preemption is not None:
            for mode in ("recompute", "swap"):
                self.preemptions.labels(mode).set(preemption.by_mode.get(mode, 0))
            self.preempted_tokens.set(preemption.tokens_dropped)
            self.preempted_seconds.set(preemption.seconds_preempted)
        return generate_latest(self.registry)
