"""What every backend's one-shot completion shares: the prompt check and collecting a stream."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from engine.errors import PromptTooLongError
from engine.prompt import PromptTemplate
from engine.types import Completion, Delta


def one_shot_ids(template: PromptTemplate, max_model_len: int, prompt_token_ids: Sequence[int] | None,
                 prompt: str | None) -> list[int]:
    """The prompt as token ids; exactly one of the two must be given, and one token must fit after it."""
    if (prompt_token_ids is None) == (prompt is None):
        raise ValueError("give exactly one of prompt_token_ids and prompt")
    ids = list(prompt_token_ids) if prompt is None else template.encode(prompt)
    if not ids:
        raise ValueError("prompt: empty; give at least one token")
    if len(ids) + 1 > max_model_len:
        raise PromptTooLongError(len(ids) + 1, max_model_len)
    return ids


async def collect(deltas: AsyncIterator[Delta], prompt_tokens: int) -> Completion:
    """A streamed completion as one `Completion`."""
    ids: list[int] = []
    text: list[str] = []
    finish = None
    async for delta in deltas:
        ids.extend(delta.token_ids)
        text.append(delta.text)
        finish = delta.finish_reason or finish
    return Completion("".join(text), tuple(ids), prompt_tokens, finish)
