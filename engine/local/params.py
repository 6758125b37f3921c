"""vLLM's `SamplingParams` for the two kinds of piece a session sends."""

from __future__ import annotations

from vllm.sampling_params import RequestOutputKind, SamplingParams

from engine.types import Sampling


def prefill_params(extra_args: dict | None = None) -> SamplingParams:
    # Intermediate pieces only need their KV computed; the one sampled token is discarded.
    return SamplingParams(max_tokens=1, temperature=0.0, detokenize=False,
                          output_kind=RequestOutputKind.DELTA, extra_args=extra_args)


def answer_params(sampling: Sampling, extra_args: dict | None = None) -> SamplingParams:
    """vLLM's parameters for an answer. Text is decoded here (IncrementalDetokenizer), not by vLLM."""
    return SamplingParams(max_tokens=sampling.max_tokens, temperature=sampling.temperature, top_p=sampling.top_p,
                          seed=sampling.seed, ignore_eos=sampling.ignore_eos, detokenize=False,
                          frequency_penalty=sampling.frequency_penalty, presence_penalty=sampling.presence_penalty,
                          repetition_penalty=sampling.repetition_penalty,
                          output_kind=RequestOutputKind.DELTA, extra_args=extra_args)
