"""vLLM's `SamplingParams` for the two kinds of piece a session sends."""

from __future__ import annotations

import json

from vllm.exceptions import VLLMClientError
from vllm.sampling_params import RequestOutputKind, SamplingParams, StructuredOutputsParams

from engine.types import MAX_LOGPROBS, Sampling, TokenLogprob


def prefill_params(extra_args: dict | None = None) -> SamplingParams:
    # Intermediate pieces only need their KV computed; the one sampled token is discarded.
    # logprobs: vLLM sizes a streaming request's logprobs bookkeeping once, from its first
    # piece, and the answer's piece (which may ask for up to MAX_LOGPROBS) comes last; asking
    # for the most on every piece keeps that bookkeeping able to hold what the answer asks.
    # It costs a top-k over the vocabulary for each piece's one discarded token.
    return SamplingParams(max_tokens=1, temperature=0.0, detokenize=False, logprobs=MAX_LOGPROBS,
                          output_kind=RequestOutputKind.DELTA, extra_args=extra_args)


def answer_params(sampling: Sampling, extra_args: dict | None = None) -> SamplingParams:
    """vLLM's parameters for an answer. Text is decoded here (IncrementalDetokenizer), not by vLLM."""
    return SamplingParams(max_tokens=sampling.max_tokens, temperature=sampling.temperature, top_p=sampling.top_p,
                          seed=sampling.seed, ignore_eos=sampling.ignore_eos, detokenize=False,
                          frequency_penalty=sampling.frequency_penalty, presence_penalty=sampling.presence_penalty,
                          repetition_penalty=sampling.repetition_penalty, logprobs=sampling.logprobs,
                          structured_outputs=structured_outputs(sampling),
                          output_kind=RequestOutputKind.DELTA, extra_args=extra_args)


def structured_outputs(sampling: Sampling) -> StructuredOutputsParams | None:
    # Compact JSON comes from the engine's setting (engine/local/engine.py), not from here.
    if sampling.json_schema is None:
        return None
    return StructuredOutputsParams(json=json.loads(sampling.json_schema))


def check_answer_params(llm, sampling: Sampling) -> None:
    """What vLLM would refuse in `sampling`'s answer (a JSON schema its grammar backends cannot
    compile, most likely), refused now as a ConfigError naming the field."""
    from engine.errors import ConfigError

    params = answer_params(sampling)
    try:  # SamplingParams.verify is what vLLM's input processor runs on every request
        params.verify(llm.model_config, llm.vllm_config.speculative_config,
                      llm.vllm_config.structured_outputs_config, llm.tokenizer)
    except (ValueError, VLLMClientError) as error:  # VLLMValidationError is not a ValueError
        raise ConfigError("json_schema" if sampling.json_schema is not None else "sampling", str(error)) from None


def token_logprobs(output, k: int | None) -> tuple[TokenLogprob, ...]:
    """vLLM's logprobs of one step's tokens (a dict per position: the sampled token and the top
    `k`, merged when the sampled one is among them) as `TokenLogprob`s."""
    if k is None or not output.logprobs:
        return ()
    out = []
    for token_id, position in zip(output.token_ids, output.logprobs):
        top = sorted(position.items(), key=lambda item: -item[1].logprob)[:k]
        out.append(TokenLogprob(token_id, position[token_id].logprob, tuple((t, lp.logprob) for t, lp in top)))
    return tuple(out)
