# nave-lab: the two commands a new user needs are `make demo` and `make test`.
# Both install libtorch into .venv on first use (scripts/setup-libtorch.sh) and
# do nothing more on later runs.
#
#   make setup GPU=1     the full torch wheel with CUDA (for a CUDA build)
#   LIBTORCH=/path make  use an existing libtorch instead; no set-up runs

GPU ?= 0
SETUP_MODE := $(if $(filter 1 yes true,$(GPU)),gpu,cpu)
CARGO ?= cargo
BIN := target/release/nave-lab

.PHONY: setup setup-reference setup-browser setup-slurm build demo test clean-runs gpu-binary

setup:
ifndef LIBTORCH
	@scripts/setup-libtorch.sh $(SETUP_MODE)
endif

build: setup
	$(CARGO) build --release

demo: build
	$(BIN) doctor
	$(BIN) train experiments/demo.yaml
	$(BIN) audit checkpoints/demo/
	$(BIN) revise reports/demo/ --run resnet18-aug0-wm1-s0
	@echo "open reports/demo/index.html"

# Tests build in release mode: one build of libtorch's bindings serves demo and
# tests. They compare against PyTorch, torchvision, timm, TensorBoard and
# scikit-learn, installed once into .venv-ref by setup-reference. The test
# files run in groups side by side, one per core, each on one libtorch thread
# (scripts/test-suite.sh); `cargo test --release` runs them one after another.
test: setup setup-reference setup-browser setup-slurm
	CARGO="$(CARGO)" scripts/test-suite.sh

setup-reference:
	@scripts/setup-reference.sh

# The report tests render in Debian's Chromium.
setup-browser:
	@command -v chromium >/dev/null || { echo "nave-lab setup: installing Debian's chromium for the report tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# The Slurm test starts a one-node cluster (scripts/slurm-local.sh) with
# Debian's Slurm and munge.
setup-slurm:
	@command -v sbatch >/dev/null && command -v munged >/dev/null || { echo "nave-lab setup: installing Debian's slurm-wlm and munge for the Slurm test"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null; }

clean-runs:
	rm -rf checkpoints/*/ reports/*/

# A binary linked with libtorch_cuda, for a CUDA machine with torch
# 2.11.0+cu130 (run it with LD_LIBRARY_PATH=<that torch>/lib, as
# benches/full-size-study.sh does): built against the tests' full torch in
# .venv-ref, in its own target folder so that the CPU build stays warm.
gpu-binary: setup-reference
	LIBTORCH=$$(.venv-ref/bin/python -c 'import os, torch; print(os.path.dirname(torch.__file__))') \
	  CARGO_TARGET_DIR=target/gpu $(CARGO) build --release
	target/gpu/release/nave-lab doctor | grep -i "cuda linked"
	@echo "target/gpu/release/nave-lab: copy it, with LD_LIBRARY_PATH=<torch 2.11.0+cu130>/lib there" 
