#!/bin/bash
# On the GPU machine. The bundle arrives in parts; stash each as it arrives:   bash docker/gpu/device_setup.sh stash DIR
# and once the last part is there, join, check and unpack it:                  bash docker/gpu/device_setup.sh unpack
set -euo pipefail
STASH=/tmp/parts SITE=${SITE:-/tmp/site}
case ${1:?stash DIR or unpack} in
  stash) mkdir -p $STASH && cp -r "${2:?folder with parts}"/. $STASH/ && ls $STASH ;;
  unpack)
    if [ ! -f $SITE/.ok ]; then
      cat $(ls $STASH/site.tar.xz.part-* | sort) > /tmp/site.tar.xz
      (cd /tmp && sha256sum -c $STASH/SHA256SUMS)
      mkdir -p $SITE && tar -xJf /tmp/site.tar.xz -C $SITE && rm /tmp/site.tar.xz && touch $SITE/.ok
    fi
    echo "export PYTHONPATH=$SITE:\$PYTHONPATH VLLM_USE_FLASHINFER_SAMPLER=0" ;;
esac
