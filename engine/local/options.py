"""`SchedulerOptions`: what the engine tells its scheduler, across vLLM's process boundary.

vLLM builds the scheduler inside its engine-core process from the engine arguments; the only
free channel is `additional_config`, a dict. The engine resolves every default from
`EngineConfig` once (`from_config`), and the scheduler reads the dict back with `from_dict`:
no default is derived a second time on the other side.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from engine.config import EngineConfig


@dataclass(frozen=True)
class SchedulerOptions:
    ledger_dir: str | None = None  # None: no ledger (tests and /metrics need one)
    record_steps: bool = False
    policy: str = "vllm"
    preempt_idle: bool = False
    isolate_final: bool = False
    serial_finals: bool = False
    cost_model: str | None = None  # a `streamrag profile` JSON; None: recompute only
    busy_poll: bool = True  # vLLM's own spinning queue readers (EngineConfig.busy_poll)

    @classmethod
    def from_config(cls, config: EngineConfig, ledger_dir: str | None, cost_model: str | None) -> SchedulerOptions:
        return cls(ledger_dir, config.record_steps, config.policy, config.idle_preemption,
                   config.final_isolation, config.finals_in_series, cost_model, config.busy_polling)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> SchedulerOptions:
        return cls(**data)
