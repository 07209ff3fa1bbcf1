"""A small LeRobot v3.0 image-mode dataset written with plain pyarrow (the real layout).

Three episodes (lengths 4, 5, 3) over two tasks, in two data files; episodes 0 and 2
succeed (``next.success`` on their last frame), episode 1 does not. Each frame is an
8x8 PNG whose pixels encode (episode, frame), so tests can tell frames apart.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rayrg.data.schema import encode_png

LENGTHS = (4, 5, 3)
TASKS = ("pick up the cube", "open the drawer")
EPISODE_TASK = (0, 1, 0)
SUCCESS = (True, False, True)
FILES = ((0, 1), (2,))  # episodes per data file
FPS = 10
IMAGE = "observation.images.top"


def frame_png(episode: int, frame: int) -> bytes:
    return encode_png(frame_array(episode, frame))


def frame_array(episode: int, frame: int, size: int = 8) -> np.ndarray:
    img = np.zeros((size, size, 3), dtype=np.uint8)
    img[..., 0], img[..., 1] = 30 * episode, 20 * frame
    return img


def write_video(path: Path, size: int = 64) -> None:
    """Every frame of every episode in one AV1 file (LeRobot packs many episodes per file)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libsvtav1", rate=FPS)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        pts = 0
        for ep, n in enumerate(LENGTHS):
            for f in range(n):
                frame = av.VideoFrame.from_ndarray(frame_array(ep, f, size), format="rgb24")
                frame.pts = pts
                pts += 1
                container.mux(stream.encode(frame))
        container.mux(stream.encode())


def action(episode: int, frame: int) -> list[float]:
    return [float(episode) + 0.5, frame / 10.0]


def _hf_value(dtype: str) -> dict:
    return {"dtype": dtype, "_type": "Value"}


def write_dataset(root: Path, video: bool = False) -> Path:
    """The dataset at ``root``; ``video``: frames in one AV1 file instead (needs PyAV)."""
    features = {
        IMAGE: {"dtype": "video" if video else "image", "shape": [8, 8, 3], "names": ["height", "width", "channels"]},
        "observation.state": {"dtype": "float32", "shape": [3], "names": None},
        "action": {"dtype": "float32", "shape": [2], "names": ["x", "y"]},
        "next.done": {"dtype": "bool", "shape": [1], "names": None},
        "next.success": {"dtype": "bool", "shape": [1], "names": None},
        "timestamp": {"dtype": "float32", "shape": [1], "names": None},
        "frame_index": {"dtype": "int64", "shape": [1], "names": None},
        "episode_index": {"dtype": "int64", "shape": [1], "names": None},
        "index": {"dtype": "int64", "shape": [1], "names": None},
        "task_index": {"dtype": "int64", "shape": [1], "names": None},
    }
    hf = {IMAGE: {"_type": "Image"},
          "observation.state": {"feature": _hf_value("float32"), "length": 3, "_type": "Sequence"},
          "action": {"feature": _hf_value("float32"), "length": 2, "_type": "Sequence"},
          "next.done": _hf_value("bool"), "next.success": _hf_value("bool"), "timestamp": _hf_value("float32"),
          **{k: _hf_value("int64") for k in ("frame_index", "episode_index", "index", "task_index")}}
    if video:
        del hf[IMAGE]
    starts = np.concatenate([[0], np.cumsum(LENGTHS)[:-1]])
    episodes_rows = []
    for file_index, eps in enumerate(FILES):
        cols: dict[str, list] = {k: [] for k in hf}
        for ep in eps:
            n = LENGTHS[ep]
            for f in range(n):
                if not video:
                    cols[IMAGE].append({"bytes": frame_png(ep, f), "path": f"frame_{ep}_{f}.png"})
                cols["observation.state"].append([float(ep), float(f), 0.0])
                cols["action"].append(action(ep, f))
                cols["next.done"].append(f == n - 1)
                cols["next.success"].append(SUCCESS[ep] and f == n - 1)
                cols["timestamp"].append(f / FPS)
                cols["frame_index"].append(f)
                cols["episode_index"].append(ep)
                cols["index"].append(int(starts[ep]) + f)
                cols["task_index"].append(EPISODE_TASK[ep])
            episodes_rows.append({
                "episode_index": ep, "tasks": [TASKS[EPISODE_TASK[ep]]], "length": n,
                "data/chunk_index": 0, "data/file_index": file_index,
                "dataset_from_index": int(starts[ep]), "dataset_to_index": int(starts[ep]) + n,
                "meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0,
                "stats/action/mean": [float(ep) + 0.5, (n - 1) / 20.0],
            })
            if video:
                episodes_rows[-1].update({
                    f"videos/{IMAGE}/chunk_index": 0, f"videos/{IMAGE}/file_index": 0,
                    f"videos/{IMAGE}/from_timestamp": float(starts[ep]) / FPS,
                    f"videos/{IMAGE}/to_timestamp": float(starts[ep] + n) / FPS})
        types = {IMAGE: pa.struct([("bytes", pa.binary()), ("path", pa.string())]),
                 "observation.state": pa.list_(pa.float32(), 3), "action": pa.list_(pa.float32(), 2),
                 "next.done": pa.bool_(), "next.success": pa.bool_(), "timestamp": pa.float32(),
                 **{k: pa.int64() for k in ("frame_index", "episode_index", "index", "task_index")}}
        schema = pa.schema([pa.field(k, types[k]) for k in hf],
                           metadata={b"huggingface": json.dumps({"info": {"features": hf}}).encode()})
        path = root / f"data/chunk-000/file-{file_index:03d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(cols, schema=schema), path)
    path = root / "meta/episodes/chunk-000/file-000.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(episodes_rows), path)
    # pandas writes the ``task`` index as a column with pandas metadata, as LeRobot's to_parquet does
    import pandas as pd

    pd.DataFrame({"task_index": list(range(len(TASKS)))}, index=pd.Index(TASKS, name="task")).to_parquet(
        root / "meta/tasks.parquet")
    if video:
        write_video(root / f"videos/{IMAGE}/chunk-000/file-000.mp4")
    total = int(sum(LENGTHS))
    info = {"codebase_version": "v3.0", "robot_type": "synthetic", "total_episodes": len(LENGTHS),
            "total_frames": total, "total_tasks": len(TASKS), "chunks_size": 1000,
            "data_files_size_in_mb": 100, "video_files_size_in_mb": 200, "fps": FPS,
            "splits": {"train": f"0:{len(LENGTHS)}"},
            "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
            "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4" if video else None,
            "features": features}
    (root / "meta/info.json").write_text(json.dumps(info, indent=4))
    stats = {"action": {"min": [0.5, 0.0], "max": [2.5, 0.4], "mean": [1.4, 0.15], "std": [0.8, 0.1],
                        "count": [total]}}
    (root / "meta/stats.json").write_text(json.dumps(stats, indent=4))
    return root
