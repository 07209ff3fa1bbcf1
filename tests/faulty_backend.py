"""RG-VLM backends that fail unexpectedly inside their Ray actors (console tests).

``fail`` raises a ``RuntimeError`` while labelling; ``stall`` writes ``RAYRG_TEST_STALL_MARKER``
and then waits, so a test can interrupt a stage that is surely running in Ray. Both register
at import: ``python -c "import tests.faulty_backend; ..."`` drivers and the Ray actors that
unpickle the classes (by reference) see them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from rayrg.rewards.rgvlm.backends import register_backend
from rayrg.rewards.rgvlm.backends.base import Backend, OnDone, RayPlan, WindowAnswer, WindowQuery
from rayrg.rewards.rgvlm.settings import BackendSettings

FAILURE = "simulated bug in a Ray actor"
STALL_MARKER_ENV = "RAYRG_TEST_STALL_MARKER"


class FailConfig(BackendSettings):
    type: Literal["fail"] = "fail"
    model: str = "fail-vlm"


class StallConfig(BackendSettings):
    type: Literal["stall"] = "stall"
    model: str = "stall-vlm"


class FailBackend(Backend):
    config_class = FailConfig

    def __init__(self, config: BackendSettings, decoding, max_parse_attempts: int = 3, share: float = 1.0) -> None:
        super().__init__(max_parse_attempts)

    @classmethod
    def ray_plan(cls, config: BackendSettings) -> RayPlan:
        return RayPlan(num_actors=1, batch_size=2, num_cpus=0.25)

    def label_batch(self, queries: Sequence[WindowQuery], on_done: OnDone | None = None) -> list[WindowAnswer]:
        raise RuntimeError(f"{FAILURE} (pid {os.getpid()})")


class StallBackend(FailBackend):
    config_class = StallConfig  # type: ignore[assignment]

    def label_batch(self, queries: Sequence[WindowQuery], on_done: OnDone | None = None) -> list[WindowAnswer]:
        Path(os.environ[STALL_MARKER_ENV]).write_text(str(os.getpid()))
        while True:
            time.sleep(1)


register_backend("fail", FailBackend)
register_backend("stall", StallBackend)
