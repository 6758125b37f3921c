#!/bin/bash
# Builds a lean vLLM 0.32.0 CUDA site tree for the H200 image (Python 3.12, torch 2.11.0+cu130 already there),
# xz-compressed and split into parts of <= 60 MiB, for GPU machines without a package index. Runs without a GPU.
# Usage, from the project root: make gpu-bundle   (or bash docker/gpu/build_bundle.sh [OUTDIR]; default .gpu/, git-ignored)
# Needs a Python 3.12 (the GPU image's) to lay out the site tree: PY=/path/to/python3.12 if it is not found.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:-.gpu}; W=$OUT/build
if [ -z "${PY:-}" ]; then  # the first Python 3.12 that runs (a pyenv shim may exist and not run)
  for c in python3.12 ~/.pyenv/versions/3.12*/bin/python3; do "$c" -c '' 2>/dev/null && PY=$c && break; done
fi
: "${PY:?no Python 3.12 found; set PY=/path/to/python3.12}"
P=""; for n in 5 17 24 26 27 28 31 34 35; do P="$P --platform manylinux_2_${n}_x86_64"; done
PLAT="--only-binary=:all: --python-version 3.12 --implementation cp $P --platform manylinux2014_x86_64 --platform manylinux1_x86_64"
mkdir -p $W/deps $W/extra $OUT/parts
python3 -m pip download -q --no-deps $PLAT -d $W vllm==0.32.0
python3 -m pip download -q --no-deps $PLAT -d $W/deps -r "$HERE/vllm-0.32.0-deps.txt"
python3 -m pip download -q --no-deps $PLAT -d $W/extra typing_extensions==4.16.0 anyio==4.16.0 truststore==0.10.5
rm -rf $W/site && mkdir $W/site
"$PY" -m pip install -q --no-index --no-deps --no-compile --target $W/site $W/deps/*.whl $W/extra/*.whl
rm -rf $W/site/bin
(cd $W/site && unzip -q ../vllm-0.32.0-*.whl)
# what a dense Llama on an H200 never loads (add _moe_C back for MoE models)
(cd $W/site/vllm && rm -rf vllm-rs && rm -f vllm_flash_attn/_vllm_fa2_C.abi3.so third_party/deep_gemm/_C_extension.abi3.so \
   _moe_C_stable_libtorch.abi3.so _deepselect_C.abi3.so _flashmla_C.abi3.so _flashkda_C.abi3.so _flashmla_extension_C.abi3.so)
(cd $W/site && tar --owner=0 --group=0 --sort=name -cf - . | xz -9e -T2) > $W/site.tar.xz
(cd $W && sha256sum site.tar.xz) > $OUT/parts/SHA256SUMS
split -b $((60 * 1024 * 1024)) -a 2 $W/site.tar.xz $OUT/parts/site.tar.xz.part-
ls -la $OUT/parts
