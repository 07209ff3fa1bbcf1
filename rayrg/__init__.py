"""rayrg: VLM reward labelling, offline RL (IQL) and evaluation on Ray.

Importing the package is cheap: heavy dependencies (torch, transformers, SDKs of model
backends, simulators) are imported by the modules that use them, when they are used.
"""

__version__ = "0.1.0"
