# Set-up and the two entry points of the README. Everything installs into ./.venv.
VENV ?= .venv
PY := $(VENV)/bin/python
# On machines with the PyTorch wheels on disk these resolve locally; elsewhere pip fetches
# them. torchvision is needed by transformers' Qwen2-VL processor (shared/FACTS.md).
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1

.PHONY: install quickstart test lint bench clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install -q $(TORCH_SPEC) -e '.[dev]'
	touch $@

install: $(VENV)/.installed

quickstart: install
	$(VENV)/bin/rayrg quickstart

test: install
	$(VENV)/bin/ruff check rayrg tests benchmarks jobs
	$(VENV)/bin/pytest -q

bench: install
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) runs
