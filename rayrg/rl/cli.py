"""``rayrg train`` (``rayrg tune``: :mod:`rayrg.experiments.cli`)."""

from __future__ import annotations

import argparse


def add_commands(sub: argparse._SubParsersAction) -> None:
    from rayrg.cli_common import add_stage_args

    p = sub.add_parser("train", help="train discrete language-conditioned IQL on Ray Train")
    p.add_argument("--config", help="TrainConfig YAML (see jobs/iql_demo.yaml, jobs/iql_babyai_full.yaml)")
    p.add_argument("--dataset", type=str, required=True, help="labelled trajectory dataset")
    p.add_argument("--out", type=str, required=True, help="run directory (resumes if it has checkpoints)")
    p.add_argument("--reward-column", help="override: reward_* column to learn from")
    p.add_argument("--num-steps", type=int, help="override: gradient steps")
    p.add_argument("--observation", choices=["state", "frame", "features"], help="override: what the policy observes")
    p.add_argument("--history", type=int, help="override: observations of history the networks see")
    p.add_argument("--features-dir", help="override: `rayrg encode` output (observation=features)")
    add_stage_args(p, _train, overwrite=True)

    p = sub.add_parser("encode", help="frozen image-encoder features of a dataset's frames (observation: features)")
    p.add_argument("--dataset", type=str, required=True, help="trajectory or labelled dataset")
    p.add_argument("--out", type=str, required=True, help="feature directory to write (must be new or empty)")
    p.add_argument("--encoder", required=True, choices=["clip", "resnet18"], help="image encoder family")
    p.add_argument("--checkpoint", type=str, required=True, help="the encoder's checkpoint directory")
    p.add_argument("--batch-size", type=int, default=256, help="frames per inference batch")
    add_stage_args(p, _encode, allow_unfinished="encode")


def _train(args: argparse.Namespace) -> int:
    from rayrg.rl.config import TrainConfig
    from rayrg.rl.train import train

    # train() checks the dataset on the driver before any worker starts; frames are checked
    # where the workers decode them.
    overrides = {"reward_column": args.reward_column, "num_steps": args.num_steps,
                 "observation": args.observation, "history": args.history, "features_dir": args.features_dir}
    config = (TrainConfig.from_yaml(args.config, **overrides) if args.config
              else TrainConfig.from_dict({k: v for k, v in overrides.items() if v is not None}))
    final = train(config, args.dataset, args.out, address=args.address,
                  on_change="redo" if args.overwrite else "refuse")
    print(f"final checkpoint: {final}")
    return 0


def _encode(args: argparse.Namespace) -> int:
    from rayrg.encode.stage import encode

    out = encode(args.dataset, args.out, args.encoder, args.checkpoint, address=args.address,
                 batch_size=args.batch_size, allow_unfinished=args.allow_unfinished)
    print(f"features: {out}")
    return 0
