# Two commands on a fresh machine: `make demo` and `make test`. Both build the virtual environment first.
#
# CPU path (default): torch==2.13.0 CPU build first, then everything else under constraints-cpu.txt so no CUDA
# wheels are pulled. On a GPU machine run `make TORCH_SPEC=torch CONSTRAINTS= setup` to keep pip's CUDA torch.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
CONSTRAINTS ?= -c constraints-cpu.txt
DEMO_DIR ?= outputs/demo
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint format clean

$(STAMP): pyproject.toml constraints-cpu.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet $(CONSTRAINTS) -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

# synth -> summary -> CoT-SFT -> validate on the tiny default (configs/sft.yaml + configs/demo.yaml).
demo: setup
	$(BIN)/longvila-r1 data synth --output-dir $(DEMO_DIR)/data --num-videos 1000 --frames 128 --seed 0
	$(BIN)/longvila-r1 data summary --data-dir $(DEMO_DIR)/data
	$(BIN)/longvila-r1 fit --config configs/sft.yaml --config configs/demo.yaml
	$(BIN)/longvila-r1 validate --config configs/sft.yaml --config configs/demo.yaml \
		--ckpt_path outputs/sft/checkpoints/last.ckpt

test: setup lint
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts

format: setup
	$(BIN)/ruff check --fix src tests benchmarks scripts
	$(BIN)/ruff format src tests benchmarks scripts

clean:
	rm -rf $(VENV) outputs .pytest_cache .ruff_cache
