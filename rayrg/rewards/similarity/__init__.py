"""Similarity-based VLM rewards: CLIP (Baumli et al.), VLM-RMs, BLIP-2 ITM and RoboCLIP.

One module per method owns its config, its scorer and its method object
(:mod:`.clip`, :mod:`.vlmrm`, :mod:`.blip2`, :mod:`.roboclip`); each is registered by one
line in :data:`rayrg.rewards.registry.LABEL_METHODS` and run with
``rayrg label --config X.yaml``. A method is a :class:`~.method.FrameMethod` or
:class:`~.method.EpisodeMethod`; :mod:`.stages` runs any of them on Ray Data without naming
one. What several methods share (device choice, the CLIP encoder) is in :mod:`._shared`.
Reward-quality reports (precision–recall, model-size scaling, prompt variants) are in
:mod:`.reports`. Importing this package loads no model library.
"""
