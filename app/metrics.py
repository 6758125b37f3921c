"""`Metrics`: the app's Prometheus metrics, in a registry of its own (no process-global state).

Requests by route, method and status, with latency and sizes, come from
prometheus-fastapi-instrumentator (`http_requests_total`, ...). streamrag adds what only it
knows: TTFT, the token accounting of sessions, sessions and KV blocks now, and the engine's
preemptions. Cumulative values are counters (`_total`); values read from the engine at
scrape time are collected then, never copied into gauges that could fall behind.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_fastapi_instrumentator import Instrumentator

from app.runs import Finish

TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    def __init__(self, app: FastAPI) -> None:
        self.registry = r = CollectorRegistry()
        Instrumentator(registry=r, should_group_status_codes=False, should_exclude_streaming_duration=True,
                       excluded_handlers=["/metrics"]).instrument(app)
        self.ttft = Histogram("streamrag_ttft_seconds", "Time to first token from the request",
                              buckets=TTFT_BUCKETS, registry=r)
        self.reused = Counter("streamrag_tokens_reused", "Prompt tokens whose KV an update kept (LCP)", registry=r)
        self.recomputed = Counter("streamrag_tokens_recomputed", "Prompt tokens computed a second time", registry=r)
        self.prefilled_early = Counter("streamrag_tokens_prefilled_before_gate",
                                       "Prompt tokens prefilled before the gate", registry=r)
        self._engine: Callable[[], object] | None = None
        r.register(_EngineCollector(lambda: self._engine() if self._engine else None))

    def watch(self, engine_of: Callable[[], object]) -> None:
        """Read sessions, KV blocks and preemptions from `engine_of()` at every scrape."""
        self._engine = engine_of

    def observe(self, finish: Finish) -> None:
        s = finish.streamrag
        if (ttft := s.get("ttft_from_request_ms")) is not None:
            self.ttft.observe(ttft / 1000)
        self.reused.inc(s.get("reused_tokens", 0))
        self.recomputed.inc(s.get("recomputed_tokens", 0))
        self.prefilled_early.inc(s.get("prefilled_before_gate", 0))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _EngineCollector:
    """The engine's own numbers, read when Prometheus scrapes."""

    def __init__(self, engine_of: Callable[[], object]) -> None:
        self._engine_of = engine_of

    def collect(self):
        engine = self._engine_of()
        healthy = engine is not None and engine.health().ok
        up = GaugeMetricFamily("streamrag_engine_up", "1 while the engine can serve")
        up.add_metric([], 1.0 if healthy else 0.0)
        yield up
        if not healthy:
            return
        sessions = GaugeMetricFamily("streamrag_active_sessions", "Engine sessions alive now")
        sessions.add_metric([], engine.live_sessions)
        yield sessions
        blocks = GaugeMetricFamily("streamrag_kv_blocks_in_use", "KV blocks the engine holds now")
        blocks.add_metric([], engine.kv_blocks_in_use())
        yield blocks
        stats = getattr(engine, "preemption_stats", None)
        if stats is None:
            return
        p = stats()
        preempted = CounterMetricFamily("streamrag_preemptions", "Waiting sessions preempted, by mode",
                                        labels=["mode"])
        for mode in ("recompute", "swap"):
            preempted.add_metric([mode], p.by_mode.get(mode, 0))
        yield preempted
        tokens = CounterMetricFamily("streamrag_preempted_tokens", "KV tokens given back by preempted sessions")
        tokens.add_metric([], p.tokens_dropped)
        yield tokens
        seconds = CounterMetricFamily("streamrag_preempted_seconds", "Time resumed sessions spent preempted")
        seconds.add_metric([], p.seconds_preempted)
        yield seconds
