"""The IQL learner: networks, target network, one optimizer per network, the fused update.

``update`` runs the three objectives of :mod:`rayrg.rl.math` in the paper's order (V, then
Q, then the policy) on one minibatch and returns its metrics as tensors — no ``.item()``,
so nothing synchronises with the host inside the training loop.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from rayrg.rl import math as iql_math
from rayrg.rl.config import TrainConfig
from rayrg.rl.networks import StateActionNet, StateNet


def unwrap(module: nn.Module) -> nn.Module:
    return module.module if hasattr(module, "module") else module


class IQLLearner:
    def __init__(self, config: TrainConfig, num_actions: int, frame_shape: tuple[int, int],
                 text_kind: str, vocab_size: int, feature_dim: int, device: torch.device | str = "cpu") -> None:
        self.config = config
        self.spec = {"num_actions": num_actions, "frame_shape": list(frame_shape), "text_kind": text_kind,
                     "vocab_size": vocab_size, "feature_dim": feature_dim}
        common = {"channels": config.channels, "frame_shape": tuple(frame_shape), "text_kind": text_kind,
                  "vocab_size": vocab_size, "text_dim": config.text_dim, "feature_dim": feature_dim,
                  "hidden": config.hidden}
        self.q: nn.Module = StateActionNet(num_actions=num_actions, heads=2, **common).to(device)
        self.q_target = copy.deepcopy(self.q).requires_grad_(False)
        self.v: nn.Module = StateNet(**common).to(device)
        self.policy: nn.Module = StateActionNet(num_actions=num_actions, heads=1, **common).to(device)
        self.step = 0
        self.make_optimizers()

    def make_optimizers(self) -> None:
        def adamw(module: nn.Module) -> torch.optim.Optimizer:
            return torch.optim.AdamW(module.parameters(), lr=self.config.lr, weight_decay=self.config.weight_decay,
                                     foreach=True)

        self.q_opt, self.v_opt, self.policy_opt = adamw(self.q), adamw(self.v), adamw(self.policy)

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        c = self.config
        frames, next_frames, text = batch["frames"], batch["next_frames"], batch["text"]
        actions = batch["actions"]
        with torch.no_grad():
            target_q = self.q_target(frames, text).gather(-1, actions.view(1, -1, 1).expand(2, -1, 1))
            target_q = target_q.squeeze(-1).min(0).values  # min of twin target Q at the dataset action
            next_value = self.v(next_frames, text)

        # V: expectile regression towards min target Q (Eq. 1)
        value = self.v(frames, text)
        v_loss = iql_math.value_loss(target_q, value, c.expectile)
        self.v_opt.zero_grad(set_to_none=True)
        v_loss.backward()
        self.v_opt.step()

        # Q: TD towards r + γ(1 − terminal)·V(s') (Eq. 2)
        q1, q2 = self.q(frames, text)
        q_loss = iql_math.q_td_loss(q1, q2, actions, batch["rewards"], batch["terminals"], next_value, c.gamma)
        self.q_opt.zero_grad(set_to_none=True)
        q_loss.backward()
        self.q_opt.step()
        iql_math.polyak_update(self.q_target, unwrap(self.q), c.polyak_tau)

        # Policy: advantage-weighted regression (Eq. 3), A = min target Q − V, detached
        advantage = target_q - value.detach()
        logits = self.policy(frames, text)[0]
        policy_loss = iql_math.awr_policy_loss(logits, actions, advantage, c.beta, c.exp_adv_max)
        self.policy_opt.zero_grad(set_to_none=True)
        policy_loss.backward()
        self.policy_opt.step()
        self.step += 1
        return {
            "loss/value": v_loss.detach(), "loss/q": q_loss.detach(), "loss/policy": policy_loss.detach(),
            "value/v_mean": value.detach().mean(), "value/q_mean": target_q.mean(),
            "adv/mean": advantage.mean(), "adv/std": advantage.std(),
            "adv/weight_saturation": (c.beta * advantage >= torch.log(torch.tensor(c.exp_adv_max))).float().mean(),
        }

    def state_dict(self) -> dict[str, Any]:
        return {"q": unwrap(self.q).state_dict(), "q_target": self.q_target.state_dict(),
                "v": unwrap(self.v).state_dict(), "policy": unwrap(self.policy).state_dict(),
                "q_opt": self.q_opt.state_dict(), "v_opt": self.v_opt.state_dict(),
                "policy_opt": self.policy_opt.state_dict(), "step": self.step, "spec": self.spec,
                "config": self.config.to_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        unwrap(self.q).load_state_dict(state["q"])
        self.q_target.load_state_dict(state["q_target"])
        unwrap(self.v).load_state_dict(state["v"])
        unwrap(self.policy).load_state_dict(state["policy"])
        self.q_opt.load_state_dict(state["q_opt"])
        self.v_opt.load_state_dict(state["v_opt"])
        self.policy_opt.load_state_dict(state["policy_opt"])
        self.step = int(state["step"])
