#!/usr/bin/env bash
# One command for a GPU machine with Python 3.12 + CUDA PyTorch (its own torch), but no Ray,
# no vLLM and no network. Prints IQL updates/s on CUDA at batch 256 (default and frame
# paths; bench_iql's ratio lines) and runs the labelling's GPU side that needs no extra
# engine: the transformers RG-VLM backend with a tiny random Qwen2-VL on CUDA, both turns of
# a few windows. Budget: < 8 min (each step has its own timeout; 240 s + 150 s).
#
# vLLM is left out on purpose: its CUDA build (several GB with its pinned torch) cannot
# travel to a machine that reaches no package registry when a call carries at most 64 MiB,
# and it would replace the machine's own torch. bench_label_vllm runs on the CPU build here.
#
# Robust on purpose: no CUDA -> one line and exit 2; a missing package for the labelling part
# (transformers, torchvision) -> that part is skipped with a line saying so, the IQL figures stay.
#
#   here (with network):   benchmarks/gpu_check.sh --download   # wheels into .gpu-wheels/ (ignored)
#   there (copy the repo with .gpu-wheels/):  benchmarks/gpu_check.sh
#
# The wheels are the small pure packages rayrg needs besides torch (pydantic, pyyaml, pyarrow,
# transformers, tokenizers, xgrammar, minigrid, ...), for CPython 3.12 manylinux x86_64.
# rayrg itself is not installed (its deps include Ray): it runs from this checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=.gpu-wheels
PKGS=(pydantic pyyaml pyarrow "transformers>=5.16.1,<6" tokenizers safetensors huggingface_hub
      regex "xgrammar>=0.2.8,<0.3" pillow "minigrid>=3,<4" gymnasium tqdm)

if [[ "${1:-}" == "--download" ]]; then
  mkdir -p "$WHEELS"
  # no deps of torch (the GPU machine has its own CUDA build); binary wheels for 3.12 only
  python3 -m pip download -q -d "$WHEELS" --only-binary=:all: --python-version 3.12 \
    --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --no-deps "${PKGS[@]}" typing-extensions typing-inspection annotated-types pydantic-core \
    filelock fsspec packaging numpy cloudpickle farama-notifications pygame-ce hf-xet
  du -sh "$WHEELS"
  exit 0
fi

PY=${PYTHON:-python3}
if ! "$PY" -c "import torch" 2>/dev/null; then
  echo "gpu_check: $PY has no torch; set PYTHON to the machine's Python with CUDA PyTorch" >&2
  exit 2
fi
if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: torch.cuda.is_available() is False (torch $("$PY" -c 'import torch; print(torch.__version__)')): no GPU check" >&2
  exit 2
fi
"$PY" -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, torch.cuda.get_device_name(0))"
VENV=.gpu-venv
RUN="$PY"
if ls "$WHEELS"/*.whl >/dev/null 2>&1; then
  if [[ ! -x "$VENV/bin/python" ]]; then
    # the system torch stays the one used: the venv sees system site-packages
    "$PY" -m venv --system-site-packages "$VENV"
    "$VENV/bin/pip" install -q --no-index --find-links "$WHEELS" --no-deps "$WHEELS"/*.whl
  fi
  RUN="$VENV/bin/python"
else
  echo "gpu_check: no $WHEELS/ (run --download where there is network): using $PY's own packages"
fi
export PYTHONPATH=$PWD HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
STATUS=0

echo "== IQL update benchmark on CUDA at batch 256 (no Ray) =="
timeout 240 "$RUN" benchmarks/bench_iql.py --device cuda --no-ray --threads 4 --batch-size 256 || STATUS=1

echo "== labelling, GPU side: transformers backend, tiny Qwen2-VL on CUDA, both turns =="
if ! "$RUN" -c "import transformers, torchvision, pydantic, pyarrow, PIL" 2>/dev/null; then
  echo "gpu_check: skipped (transformers/torchvision/pydantic/pyarrow/pillow not importable here)"
  echo "gpu_check: done, status $STATUS"
  exit $STATUS
fi
timeout 150 "$RUN" - <<'PY' || STATUS=1
import sys, tempfile, time
import numpy as np
from pathlib import Path
from rayrg.models.tiny_qwen2vl import build_tiny_qwen2vl
from rayrg.rewards.rgvlm.backends.base import WindowQuery
from rayrg.rewards.rgvlm.backends.hf import TransformersBackend
from rayrg.rewards.rgvlm.config import RGVLMConfig
from rayrg.rewards.rgvlm.prompts import render
from rayrg.windows.grid import actions_text, png_bytes

model = build_tiny_qwen2vl(Path(tempfile.mkdtemp()) / "tiny")
cfg = RGVLMConfig.from_dict({"method": "rgvlm", "decoding": {"max_tokens_analysis": 32, "max_tokens_scores": 48},
                             "backend": {"type": "transformers", "model": str(model), "device": "cuda"}})
backend = TransformersBackend(cfg.backend, cfg.decoding)
queries = []
for i in range(4):
    image = png_bytes(np.random.default_rng(i).integers(0, 255, (56, 112, 3), dtype=np.uint8))
    steps = list(range(8))
    system, analysis, scores = render(cfg.prompt_version, "go to the red ball",
                                      actions_text(steps, ["forward"] * 8), 0, 8)
    queries.append(WindowQuery(f"k{i}", f"w{i}", image, system, analysis, scores, 8))
start = time.perf_counter()
answers = backend.label_batch(queries)
elapsed = time.perf_counter() - start
for a in answers:
    print(a.scores, a.error, f"{a.backend_calls} calls")
assert all(a.scores is not None and a.backend_calls == 2 for a in answers), "a window failed"
assert "ray" not in sys.modules
print(f"transformers backend on {backend.model.device}: {len(queries) / elapsed:.2f} windows/s (both turns)")
PY
if [[ $STATUS == 0 ]]; then echo "gpu_check: OK"; else echo "gpu_check: FAILED (see above)"; fi
exit $STATUS
