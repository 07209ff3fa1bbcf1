"""IQL's objectives against the identities and hand-computed values they must satisfy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rayrg.rl import math as m


def test_expectile_half_makes_v_the_mean_of_q() -> None:
    q = torch.tensor([1.0, 2.0, 6.0, -3.0])
    v = torch.zeros((), requires_grad=True)
    opt = torch.optim.SGD([v], lr=0.2)
    for _ in range(500):
        opt.zero_grad()
        m.value_loss(q, v.expand(4), 0.5).backward()
        opt.step()
    assert float(v) == pytest.approx(float(q.mean()), abs=1e-4)


def closed_form_expectile(x: np.ndarray, tau: float) -> float:
    """Solve Σ |τ − 1(x < v)| (x − v) = 0 by bisection (the expectile's first-order condition)."""
    lo, hi = x.min(), x.max()
    for _ in range(200):
        v = (lo + hi) / 2
        g = np.sum(np.where(x < v, 1 - tau, tau) * (x - v))
        lo, hi = (v, hi) if g > 0 else (lo, v)
    return (lo + hi) / 2


@pytest.mark.parametrize("tau", [0.2, 0.7, 0.9])
def test_expectile_loss_minimiser_is_the_expectile(tau: float) -> None:
    x = np.random.default_rng(0).normal(size=200).astype(np.float32) ** 3
    v = torch.zeros((), requires_grad=True)
    opt = torch.optim.Adam([v], lr=0.05)
    for _ in range(3000):
        opt.zero_grad()
        m.expectile_loss(torch.from_numpy(x) - v, tau).backward()
        opt.step()
    assert float(v) == pytest.approx(closed_form_expectile(x, tau), abs=2e-3)


def test_expectile_loss_hand_computed() -> None:
    diff = torch.tensor([2.0, -1.0])
    # 0.8 * 4 and 0.2 * 1, averaged
    assert float(m.expectile_loss(diff, 0.8)) == pytest.approx((3.2 + 0.2) / 2)


def test_beta_zero_is_behaviour_cloning() -> None:
    logits = torch.randn(5, 6)
    actions = torch.tensor([0, 3, 5, 1, 2])
    adv = torch.randn(5)
    bc = torch.nn.functional.cross_entropy(logits, actions)
    assert float(m.awr_policy_loss(logits, actions, adv, 0.0, 100.0)) == pytest.approx(float(bc), rel=1e-6)


def test_advantage_weights_detached_and_clipped() -> None:
    adv = torch.tensor([0.0, 1.0, 10.0], requires_grad=True)
    w = m.advantage_weights(adv, 2.0, 100.0)
    assert not w.requires_grad
    assert w.tolist() == pytest.approx([1.0, np.exp(2.0), 100.0])
    logits = torch.zeros(3, 2, requires_grad=True)
    m.awr_policy_loss(logits, torch.tensor([0, 1, 0]), adv, 2.0, 100.0).backward()
    assert adv.grad is None  # no gradient flows into the critics through the weights


def test_terminal_masks_bootstrap_truncation_does_not() -> None:
    q = torch.zeros(2, 3)
    actions = torch.tensor([1, 2])
    rewards = torch.tensor([1.0, 1.0])
    next_v = torch.tensor([10.0, 10.0])
    # row 0 terminal: target 1; row 1 not terminal (a truncation is not terminal): 1 + 0.9 * 10
    loss = m.q_td_loss(q, q, actions, rewards, torch.tensor([1.0, 0.0]), next_v, 0.9)
    assert float(loss) == pytest.approx(2 * ((1.0 ** 2 + 10.0 ** 2) / 2))


def test_q_gathers_the_dataset_action_never_a_max() -> None:
    q = torch.tensor([[0.0, 5.0], [3.0, 0.0]], requires_grad=True)
    loss = m.q_td_loss(q, q.detach(), torch.tensor([0, 1]), torch.zeros(2), torch.ones(2), torch.zeros(2), 0.9)
    loss.backward()
    assert q.grad[0, 1] == 0 and q.grad[1, 0] == 0  # the larger, unchosen actions get no gradient


def test_tabular_iql_recovers_the_better_action_and_beats_bc() -> None:
    """One-step bandit per state: the data mostly takes the worse action (70 %), whose
    reward is 0; the better action pays 1. BC imitates the majority; IQL picks the better."""
    torch.manual_seed(0)
    states, actions_per_state = 4, 3
    rng = np.random.default_rng(0)
    n = 4000
    s = rng.integers(states, size=n)
    good = (s + 1) % actions_per_state
    bad = s % actions_per_state
    a = np.where(rng.random(n) < 0.3, good, bad)
    r = (a == good).astype(np.float32)
    s_t, a_t, r_t = map(torch.as_tensor, (s, a, r))
    q = torch.zeros(2, states, actions_per_state, requires_grad=True)
    v = torch.zeros(states, requires_grad=True)
    logits_iql = torch.zeros(states, actions_per_state, requires_grad=True)
    logits_bc = torch.zeros(states, actions_per_state, requires_grad=True)
    opt = torch.optim.Adam([q, v, logits_iql, logits_bc], lr=0.05)
    for _ in range(600):
        idx = torch.randint(n, (256,))
        ss, aa, rr = s_t[idx], a_t[idx], r_t[idx]
        target_q = torch.minimum(q[0], q[1])[ss].gather(-1, aa[:, None]).squeeze(-1).detach()
        loss = m.value_loss(target_q, v[ss], 0.9)
        loss = loss + m.q_td_loss(q[0][ss], q[1][ss], aa, rr, torch.ones(256), torch.zeros(256), 0.97)
        loss = loss + m.awr_policy_loss(logits_iql[ss], aa, target_q - v[ss].detach(), 3.0, 100.0)
        loss = loss + m.awr_policy_loss(logits_bc[ss], aa, torch.zeros(256), 0.0, 100.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    best = (torch.arange(states) + 1) % actions_per_state
    assert (logits_iql.argmax(-1) == best).all()
    assert (logits_bc.argmax(-1) != best).all()
