#!/usr/bin/env bash
# Installs libtorch (from PyPI's torch wheel) into the project-local virtual
# environment .venv and lays out .libtorch/, the folder the Rust build links
# against. Idempotent: a second run with the same mode does nothing.
#
#   scripts/setup-libtorch.sh          CPU-only: torch without its CUDA wheels,
#                                      plus the two CUDA libraries libtorch_cpu
#                                      needs at load time (runtime and CUPTI), ~1.3 GB
#   scripts/setup-libtorch.sh gpu      the full wheel with every CUDA dependency, ~4.7 GB
#
# Why a separate link folder: the CPU-only install has libtorch_cuda.so but not
# the libraries it needs (cuDNN, cuBLAS ...). torch-sys links libtorch_cuda.so
# whenever it sees it, which would leave the binary unloadable. .libtorch/lib
# holds links to the libraries that can actually be loaded.
set -euo pipefail

TORCH_VERSION=2.11.0
# The CUDA runtime and CUPTI versions torch 2.11.0's wheel pins (via cuda-toolkit 13.0.2).
CUDA_RUNTIME='nvidia-cuda-runtime==13.0.96.*'
CUDA_CUPTI='nvidia-cuda-cupti==13.0.85.*'

mode=${1:-cpu}
case "$mode" in
  cpu|gpu) ;;
  *) echo "usage: $0 [cpu|gpu]  (got '$mode')" >&2; exit 2 ;;
esac

root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.venv"
link="$root/.libtorch"
stamp="$venv/.nave-lab-torch-$mode"
python=${PYTHON:-python3}

if [ -f "$stamp" ] && [ -f "$link/build-version" ]; then
  exit 0
fi
# A full (gpu) install already satisfies a cpu request.
if [ "$mode" = cpu ] && [ -f "$venv/.nave-lab-torch-gpu" ] && [ -f "$link/build-version" ]; then
  exit 0
fi

command -v "$python" >/dev/null || { echo "error: $python not found; nave-lab's set-up needs Python 3.9+ with venv and pip" >&2; exit 1; }

start=$(date +%s)
if [ ! -x "$venv/bin/python" ]; then
  echo "nave-lab setup: creating $venv"
  "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip install --disable-pip-version-check --progress-bar off)
if [ "$mode" = gpu ]; then
  echo "nave-lab setup: installing torch==$TORCH_VERSION with its CUDA libraries (~4.7 GB)"
  "${pip[@]}" "torch==$TORCH_VERSION"
else
  echo "nave-lab setup: installing torch==$TORCH_VERSION, CPU-only (~1.3 GB)"
  "${pip[@]}" --no-deps "torch==$TORCH_VERSION" "$CUDA_RUNTIME" "$CUDA_CUPTI"
fi

torch_dir=$("$venv/bin/python" - <<'PY'
import importlib.util, pathlib
spec = importlib.util.find_spec("torch")
print(pathlib.Path(spec.origin).parent)
PY
)
lib="$torch_dir/lib"
[ -f "$lib/libtorch_cpu.so" ] || { echo "error: $lib/libtorch_cpu.so missing after install" >&2; exit 1; }

rm -rf "$link.tmp"
mkdir -p "$link.tmp/lib"
ln -s "$torch_dir/include" "$link.tmp/include"
for so in libtorch.so libtorch_cpu.so libc10.so libgomp.so.1; do
  [ -e "$lib/$so" ] && ln -s "$lib/$so" "$link.tmp/lib/$so"
done
# libtorch_cuda is linked only when every library it needs can be found, i.e.
# after a gpu install; ldd runs with the torch lib folder's own RPATH.
# (ldd's output is captured first: under pipefail, `ldd | grep -q` can fail
# by SIGPIPE when grep stops reading early, which would read as "loadable".)
if ldd_out=$(ldd "$lib/libtorch_cuda.so" 2>&1) && ! grep -q "not found" <<<"$ldd_out"; then
  for so in libtorch_cuda.so libc10_cuda.so; do
    [ -e "$lib/$so" ] && ln -s "$lib/$so" "$link.tmp/lib/$so"
  done
  echo "nave-lab setup: libtorch_cuda is loadable and will be linked (CUDA builds)"
fi
echo "$TORCH_VERSION" > "$link.tmp/build-version"
rm -rf "$link"
mv "$link.tmp" "$link"
touch "$stamp"
echo "nave-lab setup: done in $(( $(date +%s) - start )) s; libtorch at $lib ($(du -sh "$venv" | cut -f1) in .venv)"
