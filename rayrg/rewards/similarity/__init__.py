"""Similarity-based VLM rewards: CLIP (Baumli et al.), VLM-RMs, BLIP-2 ITM and RoboCLIP.

Methods are registered by name in :mod:`rayrg.rewards.registry` (``clip``, ``vlmrm``,
``blip2``, ``roboclip``) and run with ``rayrg label --config X.yaml``. Reward-quality
reports (precision–recall, model-size scaling, prompt variants) are in
:mod:`rayrg.rewards.similarity.reports`. Importing this package loads no model library.
"""
