"""Progress-style VLM labellers: GVL (``gvl.py``) and TOPReward (``topreward.py``).

Each is one module registered by one line in :data:`rayrg.rewards.registry.LABEL_METHODS`;
they share the pipeline (``pipeline.py``), the frame sampling (``sampling.py``), the prompt
texts (``prompts.py``) and the shaping (:mod:`rayrg.rewards.shaping`). Nothing is registered
from here.
"""
