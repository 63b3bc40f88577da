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

.PHONY: setup build demo test bench clean-runs

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

# Tests build in release mode: one build of libtorch's bindings serves demo and tests.
test: setup
	$(CARGO) test --release

clean-runs:
	rm -rf checkpoints/*/ reports/*/
