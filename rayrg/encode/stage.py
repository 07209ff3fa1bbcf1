"""``rayrg encode``: per-frame features of a trajectory dataset by a frozen image encoder.

A Ray Data pipeline: read the shards' keys and frames, an autoscaling pool of encoder actors
(fractional CPUs: a fixed pool asking for more CPUs than the machine has waits forever)
decodes and embeds each batch once, and the result is written as a *sidecar* next to, not
into, the dataset::

    <out>/*.parquet     episode_id, step, feature (list<float32>), final_feature (last rows)
    <out>/encoder.json  the encoder record (rayrg.encode.encoders), also kept by checkpoints

Training with ``observation: features`` and ``features_dir: <out>`` then never runs a conv.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rayrg.contracts.features import ENCODER_FILE, write_encoder_record

__all__ = ["ENCODER_FILE", "EncodeBatch", "encode"]
FEATURE_COLUMNS = ["episode_id", "step", "frame", "final_frame"]


class EncodeBatch:
    """Ray Data actor: one encoder per actor, loaded once."""

    def __init__(self, record: dict[str, Any], device: str = "cpu") -> None:
        from rayrg.encode.encoders import ImageEncoder

        self.encoder = ImageEncoder(record, device)

    def __call__(self, batch: dict[str, np.ndarray]) -> Any:
        import pyarrow as pa

        from rayrg.data.schema import DatasetError, decode_png

        def decode(data: bytes, row: int, column: str) -> np.ndarray:
            try:
                return decode_png(data)
            except Exception as exc:  # PIL raises several types for corrupt data
                raise DatasetError(f"episode {batch['episode_id'][row]!r} step {batch['step'][row]}: "
                                   f"column '{column}' is not a decodable image: {exc}") from exc

        feats = self.encoder(np.stack([decode(b, i, "frame") for i, b in enumerate(batch["frame"])]))
        final_rows = [i for i, b in enumerate(batch["final_frame"]) if b is not None]
        finals: list[Any] = [None] * len(feats)
        if final_rows:
            encoded = self.encoder(np.stack([decode(batch["final_frame"][i], i, "final_frame") for i in final_rows]))
            for i, f in zip(final_rows, encoded, strict=True):
                finals[i] = f.tolist()
        return pa.table({
            "episode_id": pa.array(list(batch["episode_id"]), pa.string()),
            "step": pa.array(np.asarray(batch["step"], dtype=np.int32)),
            "feature": pa.array([f.tolist() for f in feats], pa.list_(pa.float32())),
            "final_feature": pa.array(finals, pa.list_(pa.float32())),
        })


def encode(dataset: Any, out: Any, encoder: str, checkpoint: str | Path,
           address: str | None = None, batch_size: int = 256, max_actors: int = 2,
           allow_unfinished: bool = False) -> Any:
    """Write the feature sidecar of ``dataset`` under ``out``; refuses a non-empty ``out``,
    and unfinished labels unless ``allow_unfinished``."""
    from ray.data import ActorPoolStrategy

    from rayrg.config import ConfigError
    from rayrg.data.access import Dataset, require_finished
    from rayrg.encode.encoders import encoder_record
    from rayrg.runtime import init_ray
    from rayrg.storage import (
        open_input,
        prepare_output,
        ray_data_args,
        refuse_local_on_cluster,
        resolve,
    )
    from rayrg.windows.staging import as_arg, checked_for_write, staged

    dataset_loc = open_input(dataset)
    dataset = as_arg(dataset_loc)
    require_finished(dataset, "encode", allow=allow_unfinished)
    out_loc = resolve(out)
    if out_loc.exists() and out_loc.ls():
        raise ConfigError(f"{out_loc} is not empty; choose a new --out (features are never mixed or reused)")
    out_loc = prepare_output(out_loc)
    out = as_arg(out_loc)
    source = Dataset.open(dataset)  # every shard's schema, from its footer
    record = encoder_record(encoder, checkpoint)
    init_ray(address)
    refuse_local_on_cluster(out_loc)  # now that the cluster's shape is known
    ds = source.ray_read(FEATURE_COLUMNS)
    ds = ds.map_batches(EncodeBatch, fn_constructor_kwargs={"record": record}, batch_size=batch_size,
                        batch_format="numpy", compute=ActorPoolStrategy(min_size=1, max_size=max_actors),
                        num_cpus=0.5)
    # Written beside ``out`` and published whole: a write cut short (Ctrl-C, a lost node) left
    # its Parquet files in ``out``, which the same command then refused as "not empty".
    with staged(out_loc) as (staging, token):
        path, filesystem = ray_data_args(staging)
        checked_for_write(ds, out_loc, token).write_parquet(path, filesystem=filesystem)
    from rayrg.provenance import dataset_fingerprint

    # The dataset's fingerprint (for unfinished labels: which windows were missing) goes into
    # the features' record, so a run keyed to these features is keyed to it too.
    write_encoder_record(out, {**record, "dataset": str(Path(dataset).resolve()) if dataset_loc.is_local
                               else str(dataset_loc),
                               "dataset_fingerprint": dataset_fingerprint(dataset)})
    return out
