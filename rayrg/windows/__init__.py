"""Windows of W transitions composed into one grid image each (the RG-VLM query unit)."""

from rayrg.windows.build import WindowConfig, make_windows

__all__ = ["WindowConfig", "make_windows"]
