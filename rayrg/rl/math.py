"""IQL's three objectives as pure functions (Kostrikov et al. 2022; RG-VLM paper Eq. 1-3).

Discrete actions: Q heads output one value per action and are *gathered at the dataset
action* — there is never a max over actions in training (that is what keeps IQL in-sample).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def expectile_loss(diff: torch.Tensor, expectile: float) -> torch.Tensor:
    """Eq. 1: L_τ(u) = |τ − 1(u < 0)| u², with u = Q(s, a) − V(s); τ = 0.5 is half the MSE."""
    weight = torch.where(diff < 0, 1.0 - expectile, expectile)
    return (weight * diff.pow(2)).mean()


def value_loss(target_q: torch.Tensor, value: torch.Tensor, expectile: float) -> torch.Tensor:
    """V regressed to an upper expectile of min(target Q1, Q2)(s, a) (targets detached)."""
    return expectile_loss(target_q.detach() - value, expectile)


def q_td_loss(q1: torch.Tensor, q2: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor,
              terminals: torch.Tensor, next_value: torch.Tensor, gamma: float) -> torch.Tensor:
    """Eq. 2: both Q heads at the dataset action regressed to r + γ(1 − terminal)V(s').

    ``terminal`` (goal reached / failed) masks the bootstrap; a time-limit truncation is not
    terminal and keeps it.
    """
    target = (rewards + gamma * (1.0 - terminals.float()) * next_value).detach()
    a = actions.long().unsqueeze(-1)
    return F.mse_loss(q1.gather(-1, a).squeeze(-1), target) + F.mse_loss(q2.gather(-1, a).squeeze(-1), target)


def advantage_weights(advantage: torch.Tensor, beta: float, exp_adv_max: float) -> torch.Tensor:
    """exp(β·A), clipped at ``exp_adv_max`` and detached (no gradient into the critics)."""
    return torch.exp(beta * advantage.detach()).clamp(max=exp_adv_max)


def awr_policy_loss(logits: torch.Tensor, actions: torch.Tensor, advantage: torch.Tensor,
                    beta: float, exp_adv_max: float) -> torch.Tensor:
    """Eq. 3: advantage-weighted regression for a categorical policy. β = 0 → behaviour cloning."""
    log_prob = torch.distributions.Categorical(logits=logits).log_prob(actions.long())
    return -(advantage_weights(advantage, beta, exp_adv_max) * log_prob).mean()


@torch.no_grad()
def polyak_update(target: torch.nn.Module, source: torch.nn.Module, tau: float) -> None:
    """target ← (1 − τ)·target + τ·source, parameter by parameter (one fused call)."""
    targets, sources = list(target.parameters()), list(source.parameters())
    if len(targets) != len(sources):
        raise ValueError("target and source networks differ in their parameters")
    torch._foreach_lerp_(targets, sources, tau)
