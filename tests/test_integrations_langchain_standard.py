"""langchain-tests' standard suites for `StreamRAGChatModel`.

Unit tests need no engine (a server URL that is never contacted). Integration tests run on the
tiny model through `engine_runner`, an engine on a thread of its own: the suite calls `invoke()`
and `stream()` from plain sync test functions, when no loop of ours is running. Features the
model cannot have are declared through the suite's own properties, which then skip their tests.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_tests.integration_tests import ChatModelIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests

from integrations.langchain import StreamRAGChatModel

UNUSED_URL = "http://127.0.0.1:9"  # construction only; never connected to


class TestStreamRAGChatModelUnit(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[StreamRAGChatModel]:
        return StreamRAGChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"base_url": UNUSED_URL}

    @property
    def init_from_env_params(self) -> tuple[dict, dict, dict]:
        env = {"STREAMRAG_BASE_URL": UNUSED_URL, "STREAMRAG_API_KEY": "secret"}
        return env, {}, {"base_url": UNUSED_URL, "api_key": "secret"}

    @property
    def supports_model_override(self) -> bool:
        return False  # an engine serves one model


class TestStreamRAGChatModelIntegration(ChatModelIntegrationTests):
    @pytest.fixture(autouse=True)
    def _runner(self, engine_runner) -> None:
        # Per test instance (not a global): chat_model_params reads it.
        self.runner = engine_runner

    @property
    def chat_model_class(self) -> type[StreamRAGChatModel]:
        return StreamRAGChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"engine": self.runner, "max_tokens": 16}

    @property
    def supports_model_override(self) -> bool:
        return False  # an engine serves one model

    @property
    def has_tool_calling(self) -> bool:
        return False  # a chat template without tools; no function-calling parser

    @property
    def has_structured_output(self) -> bool:
        return False

    @property
    def supports_json_mode(self) -> bool:
        return False
