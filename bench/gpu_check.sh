#!/usr/bin/env bash
# The GPU checks of issue 15, one part per device call (each well under the 7-minute budget of a call), on an offline
# CUDA machine that receives only the checkout. Prepare on the development machine, from the project root:
#   echo /.whl/ >> .git/info/exclude; echo /.gpu/ >> .git/info/exclude
#   bash ../shared/tools/gpu-7b/prepare_wheels.sh            # wheels the GPU machine lacks, into .whl/
#   (add pytest, iniconfig and pluggy to its list when they are missing there: the `tests` part needs them)
#   mkdir -p .gpu && cp ../shared/fixtures/qwen2-vocab.gguf ../shared/fixtures/llama3-vocab.gguf .gpu/
# then carry [".whl", ".gpu"] and run, one call each:
#   OUT=$OUT bash bench/gpu_check.sh tests    # tests/test_gpu.py (marker gpu): train, merge-and-generate, plan
#   OUT=$OUT bash bench/gpu_check.sh train    # bench/gpu_train.py -> $OUT/train_gpu.json
#   OUT=$OUT bash bench/gpu_check.sh eval     # bench/gpu_eval.py  -> $OUT/eval_gpu.json
# Copy the JSON files to bench/results/ and their tables to bench/README.md.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
site=/tmp/lingoforge-site
if [[ ! -d $site ]]; then
  mkdir -p "$site"
  for wheel in .whl/*.whl; do python3 -m zipfile -e "$wheel" "$site"; done
fi
export PYTHONPATH=$site PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export LF_VOCAB=$PWD/.gpu/qwen2-vocab.gguf LINGOFORGE_CACHE=/tmp/lingoforge-cache
# tests/fixtures_vocab.py looks in the cache before fetching the llama-cpp-python sdist (no network here)
fixtures=$LINGOFORGE_CACHE/fixtures/llama-cpp-python-0.3.36
mkdir -p "$fixtures" && cp .gpu/qwen2-vocab.gguf .gpu/llama3-vocab.gguf "$fixtures/"
nvidia-smi --query-gpu=name,memory.total,memory.used --format=csv | tee "$OUT/gpu.txt"
case "${1:-}" in
  tests) timeout 300 python3 -m pytest -m gpu tests/test_gpu.py -q -rs -p no:cacheprovider --durations=5 2>&1 \
           | tee "$OUT/test_gpu.txt" ;;
  train) (cd bench && timeout 420 python3 gpu_train.py --steps 8 --warmup 3 --out "$OUT/train_gpu.json") 2>&1 \
           | grep -v "^{'" | tee "$OUT/train_gpu.txt" ;;
  eval)  (cd bench && timeout 420 python3 gpu_eval.py --out "$OUT/eval_gpu.json") 2>&1 \
           | grep -v "^{'" | tee "$OUT/eval_gpu.txt" ;;
  *) echo "usage: OUT=DIR bash bench/gpu_check.sh tests|train|eval" >&2; exit 2 ;;
esac
