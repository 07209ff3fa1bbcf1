"""The IQL learner: networks, target network, one optimizer over all of them, the fused update.

``update`` computes the three objectives of :mod:`rayrg.rl.math` (V, Q, policy) on one
minibatch, each from the networks as they were before the step (as the paper's sequential
updates do: none of them reads another's updated weights), takes one optimizer step and
returns its metrics as tensors — no ``.item()``, so nothing synchronises with the host
inside the training loop.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn

from rayrg.rl import math as iql_math
from rayrg.rl.checkpoint import NetworkSpec, build_networks
from rayrg.rl.config import TrainConfig


def unwrap(module: nn.Module) -> nn.Module:
    return module.module if hasattr(module, "module") else module


class IQLLearner:
    """Q (twin), target Q, V and the policy, with one AdamW over all three.

    With ``shared_encoder`` the learner owns one observation encoder: the Q loss trains it,
    V, the policy and the target heads read its output detached, and the target heads sit on
    the online encoder (one encoder pass per batch instead of four).
    """

    def __init__(self, config: TrainConfig, spec: NetworkSpec, device: torch.device | str = "cpu") -> None:
        self.config = config
        self.spec = spec
        nets = build_networks(config, spec, device)
        self.encoder: nn.Module | None = nets.get("encoder")
        self.q: nn.Module = nets["q"]
        self.q_target = copy.deepcopy(self.q).requires_grad_(False)
        self.v: nn.Module = nets["v"]
        self.policy: nn.Module = nets["policy"]
        self.step = 0
        self._overlap_checked = False
        # Build the networks' shared encoder input once per batch (rayrg.rl.networks
        # ObservationEncoder.prepare); False: each network builds its own (the update before
        # it, kept as the reference of tests and bench_iql).
        self._prepare_input = True
        self.make_optimizers()

    def make_optimizers(self) -> None:
        # One AdamW over Q (+ shared encoder), V and the policy. The three losses read only
        # detached quantities of each other (target Q, V(s'), A), so each network's gradient
        # of their sum is its own loss's gradient, and AdamW is per parameter: one backward
        # and one optimizer step give the updates of three separate ones, with a third of
        # the per-call overhead (that overhead, not arithmetic, bounds a small update).
        # fused: one kernel per parameter; on CPU foreach=True falls back to a per-tensor loop
        # of ~10 ops each (fused measured ~1.4x faster updates on 1 CPU thread, torch 2.14).
        params = [p for m in self._trained() for p in m.parameters()]
        self.opt = torch.optim.AdamW(params, lr=self.config.lr, weight_decay=self.config.weight_decay,
                                     fused=True)

    def _trained(self) -> list[nn.Module]:
        return [self.q, *([self.encoder] if self.encoder is not None else []), self.v, self.policy]

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        c = self.config
        obs, next_obs, text = batch["obs"], batch["next_obs"], batch["text"]
        actions = batch["actions"]
        if self.encoder is not None:
            # The next history is this one shifted by one step (next_obs[:, :-1] == obs[:, 1:],
            # rayrg.rl.data.history_indices), and the encoder encodes each observation alone:
            # encode the k + 1 distinct observations once instead of 2k.
            if not self._overlap_checked:
                if not torch.equal(next_obs[:, :-1], obs[:, 1:]):
                    raise ValueError("shared_encoder: batch['next_obs'] must be batch['obs'] shifted by "
                                     "one step (TransitionTensors.sample builds it so)")
                self._overlap_checked = True
            k = obs.shape[1]
            encoded = self.encoder(torch.cat([obs, next_obs[:, -1:]], dim=1))  # [B, (k+1)·C]
            width = encoded.shape[1] // (k + 1)
            obs_q = encoded[:, :k * width]  # the only encoder output with a gradient (Q loss)
            next_obs = encoded[:, width:].detach()
            obs = obs_q.detach()
        else:
            obs_q = obs
        prepared = self._prepare_input
        if prepared:
            # The networks' encoders have their own weights (the target's too), but the
            # parameter-free part of their input is the same for all: the multi-hot of every
            # state cell and the instruction's word shares. Build it once per batch and
            # observation set instead of once per network call (five calls; it was a fifth of
            # an update). Same values up to summation order (tests/rl/test_learner.py).
            net = unwrap(self.q)
            if self.encoder is None:  # (a shared encoder's output needs nothing built)
                obs = obs_q = net.obs.prepare(obs)
                next_obs = net.obs.prepare(next_obs)
            text = net.text.prepare(text)
        with torch.no_grad():
            target_q = self.q_target(obs, text, prepared).gather(-1, actions.view(1, -1, 1).expand(2, -1, 1))
            target_q = target_q.squeeze(-1).min(0).values  # min of twin target Q at the dataset action
        value, next_value = self.values(obs, next_obs, text, prepared)

        # V: expectile regression towards min target Q (Eq. 1)
        v_loss = iql_math.value_loss(target_q, value, c.expectile)
        # Q: TD towards r + γ(1 − terminal)·V(s') (Eq. 2)
        q1, q2 = self.q(obs_q, text, prepared)
        q_loss = iql_math.q_td_loss(q1, q2, actions, batch["rewards"], batch["terminals"], next_value, c.gamma)
        # Policy: advantage-weighted regression (Eq. 3), A = min target Q − V, detached
        advantage = target_q - value.detach()
        logits = self.policy(obs, text, prepared)[0]
        policy_loss = iql_math.awr_policy_loss(logits, actions, advantage, c.beta, c.exp_adv_max)

        self.opt.zero_grad(set_to_none=True)
        (v_loss + q_loss + policy_loss).backward()
        self.opt.step()
        iql_math.polyak_update(self.q_target, unwrap(self.q), c.polyak_tau)
        self.step += 1
        return {
            "loss/value": v_loss.detach(), "loss/q": q_loss.detach(), "loss/policy": policy_loss.detach(),
            "value/v_mean": value.detach().mean(), "value/q_mean": target_q.mean(),
            "adv/mean": advantage.mean(), "adv/std": advantage.std(),
            "adv/weight_saturation": (c.beta * advantage >= math.log(c.exp_adv_max)).float().mean(),
        }

    def values(self, obs: torch.Tensor, next_obs: torch.Tensor, text: torch.Tensor,
               prepared: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """V(s) (with its gradient) and V(s') (detached), in two calls. One call on the two
        batches concatenated gives the same values and was no faster (bench_iql: the update
        is bound by per-operation overhead and the state encoder, not by the number of calls)."""
        with torch.no_grad():
            next_value = self.v(next_obs, text, prepared)
        return self.v(obs, text, prepared), next_value

    def state_dict(self) -> dict[str, Any]:
        return {"q": unwrap(self.q).state_dict(), "q_target": self.q_target.state_dict(),
                "v": unwrap(self.v).state_dict(), "policy": unwrap(self.policy).state_dict(),
                "opt": self.opt.state_dict(), "step": self.step, "spec": self.spec.to_dict(),
                "config": self.config.to_dict(),
                **({"encoder": unwrap(self.encoder).state_dict()} if self.encoder is not None else {})}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        unwrap(self.q).load_state_dict(state["q"])
        self.q_target.load_state_dict(state["q_target"])
        unwrap(self.v).load_state_dict(state["v"])
        unwrap(self.policy).load_state_dict(state["policy"])
        if self.encoder is not None:
            unwrap(self.encoder).load_state_dict(state["encoder"])
        if "opt" not in state:
            from rayrg.config import ConfigError

            raise ConfigError("IQL checkpoint: written by an older rayrg (one optimizer per network, "
                              "separate MLP heads); train it again")
        self.opt.load_state_dict(state["opt"])
        self.step = int(state["step"])
