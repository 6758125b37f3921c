"""`ReplicaSet`: consistent hashing keeps sessions in place, and moves only a failed replica's."""

from __future__ import annotations

import pytest

from engine import ConfigError
from engine.remote.replicas import NoReplicaError, ReplicaSet, normalize_url

URLS = [f"http://10.1.0.{i}:8001" for i in range(1, 5)]
KEYS = [f"sr-{i:016x}" for i in range(2000)]


def test_a_key_always_maps_to_the_same_replica_and_load_spreads():
    ring = ReplicaSet(URLS)
    first = {k: ring.pick(k) for k in KEYS}
    assert first == {k: ReplicaSet(URLS).pick(k) for k in KEYS}  # stable across processes
    counts = {u: list(first.values()).count(u) for u in URLS}
    assert min(counts.values()) > len(KEYS) / len(URLS) * 0.6, counts


def test_taking_a_replica_out_moves_only_its_keys():
    ring = ReplicaSet(URLS)
    before = {k: ring.pick(k) for k in KEYS}
    assert ring.mark_down(URLS[1]) is True and ring.mark_down(URLS[1]) is False
    after = {k: ring.pick(k) for k in KEYS}
    moved = {k for k in KEYS if before[k] != after[k]}
    assert moved == {k for k in KEYS if before[k] == URLS[1]}
    assert URLS[1] not in after.values()
    ring.mark_up(URLS[1])
    assert {k: ring.pick(k) for k in KEYS} == before
    assert [s.failures for s in ring.status()] == [0, 1, 0, 0]


def test_a_placement_moves_once_per_failure_and_then_stays():
    ring = ReplicaSet(URLS[:2])
    placement = ring.place("sr-0001")
    home = placement.replica
    assert ring.move(placement, home) is True
    assert placement.replica != home and placement.moves == 1
    ring.mark_up(home)  # the old replica is back; the session stays where its cache now is
    assert placement.replica != home
    with pytest.raises(NoReplicaError, match="no vLLM server is up"):
        ring.mark_down(placement.replica)
        ring.mark_down(home)
        ring.pick("anything")


def test_urls_are_normalized_and_bad_ones_name_the_field():
    assert normalize_url(" http://h:1/v1/ ") == "http://h:1"
    assert ReplicaSet(["http://h:1", "http://h:1/"]).urls == ("http://h:1",)
    with pytest.raises(ConfigError, match="vllm_url"):
        ReplicaSet(["h:1"])
    with pytest.raises(ConfigError, match="vllm_urls"):
        ReplicaSet([])
    with pytest.raises(ConfigError, match="replica"):
        ReplicaSet(URLS).place("k", replica="http://elsewhere:1")
