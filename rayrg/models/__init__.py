"""Model builders; ``tiny_qwen2vl`` makes a randomly initialised Qwen2-VL checkpoint for pipeline checks."""
