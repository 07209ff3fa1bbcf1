"""IQLLearner.update against a hand-written reference; history indices; observation kinds."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from rayrg.data.schema import DatasetError
from rayrg.rl.checkpoint import NetworkSpec, network_spec, save_checkpoint
from rayrg.rl.config import TrainConfig
from rayrg.rl.data import history_indices, load_transitions
from rayrg.rl.iql import IQLLearner
from rayrg.rl.networks import ObsSpec

TINY = {"hidden": 16, "text_dim": 4, "batch_size": 8, "channels": [4, 4]}


def _tiny_learner(**overrides) -> IQLLearner:
    config = TrainConfig(**{"observation": "state", "history": 2, "beta": 2.0, "expectile": 0.7,
                            "polyak_tau": 0.3, "lr": 1e-2, "exp_adv_max": 5.0, **TINY, **overrides})
    spec = NetworkSpec(num_actions=6, obs=ObsSpec(kind="state", shape=(7, 7, 3), history=2).to_dict(),
                       text_kind="tokens", vocab_size=10, feature_dim=0)
    torch.manual_seed(0)
    return IQLLearner(config, spec)


def _batch(seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    b = 8
    return {"obs": torch.randint(0, 11, (b, 2, 7, 7, 3), generator=g, dtype=torch.uint8),
            "next_obs": torch.randint(0, 11, (b, 2, 7, 7, 3), generator=g, dtype=torch.uint8),
            "actions": torch.randint(0, 6, (b,), generator=g), "rewards": torch.rand(b, generator=g),
            "terminals": (torch.rand(b, generator=g) < 0.3).float(),
            "text": torch.randint(0, 10, (b, 5), generator=g)}


def test_update_matches_a_hand_written_reference() -> None:
    learner = _tiny_learner()
    with torch.no_grad():  # a target that differs from Q, so using Q in its place would show
        for p in learner.q_target.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    c = learner.config
    q, qt, v, pi = (copy.deepcopy(m) for m in (learner.q, learner.q_target, learner.v, learner.policy))
    opts = {name: torch.optim.AdamW(m.parameters(), lr=c.lr, weight_decay=c.weight_decay)
            for name, m in (("q", q), ("v", v), ("pi", pi))}
    batch = _batch()
    obs, nxt, text, a = batch["obs"], batch["next_obs"], batch["text"], batch["actions"]

    with torch.no_grad():
        twin = qt(obs, text)  # [2, B, A]
        target_q = torch.minimum(twin[0, torch.arange(8), a], twin[1, torch.arange(8), a])
        next_v = v(nxt, text)
    value = v(obs, text)
    u = target_q - value
    v_loss = (torch.where(u < 0, 1 - c.expectile, c.expectile) * u**2).mean()
    opts["v"].zero_grad()
    v_loss.backward()
    opts["v"].step()
    y = batch["rewards"] + c.gamma * (1 - batch["terminals"]) * next_v
    q1, q2 = q(obs, text)
    q_loss = ((q1[torch.arange(8), a] - y) ** 2).mean() + ((q2[torch.arange(8), a] - y) ** 2).mean()
    opts["q"].zero_grad()
    q_loss.backward()
    opts["q"].step()
    expected_target = [(1 - c.polyak_tau) * t.detach() + c.polyak_tau * s.detach()
                       for t, s in zip(qt.parameters(), q.parameters(), strict=True)]
    adv = (target_q - value.detach())
    weights = torch.exp(c.beta * adv).clamp(max=c.exp_adv_max)
    logp = torch.log_softmax(pi(obs, text)[0], -1)[torch.arange(8), a]
    pi_loss = -(weights * logp).mean()
    opts["pi"].zero_grad()
    pi_loss.backward()
    opts["pi"].step()

    metrics = learner.update(batch)
    assert float(metrics["loss/value"]) == pytest.approx(float(v_loss.detach()), rel=1e-5)
    assert float(metrics["loss/q"]) == pytest.approx(float(q_loss.detach()), rel=1e-5)
    assert float(metrics["loss/policy"]) == pytest.approx(float(pi_loss.detach()), rel=1e-5)
    # Adam's first step is lr·g/(|g| + 1e-8): on a near-zero gradient a rounding difference of
    # 1e-12 (the reference indexes where the learner gathers) moves a weight by ~1e-6, so the
    # parameters are compared to 0.1 % of one step (lr 1e-2); a wrong loss moves them by ~lr.
    for mine, ref in ((learner.q, q), (learner.v, v), (learner.policy, pi)):
        for p, r in zip(mine.parameters(), ref.parameters(), strict=True):
            torch.testing.assert_close(p, r, rtol=1e-5, atol=1e-5)
    for p, e in zip(learner.q_target.parameters(), expected_target, strict=True):
        torch.testing.assert_close(p, e, rtol=1e-5, atol=1e-6)


def _shifted_batch(seed: int) -> dict[str, torch.Tensor]:
    """A batch whose next history is its history shifted by one step, as sample() builds it."""
    batch = _batch(seed)
    frames = torch.randint(0, 11, (8, 3, 7, 7, 3), generator=torch.Generator().manual_seed(seed + 99),
                           dtype=torch.uint8)
    batch["obs"], batch["next_obs"] = frames[:, :2], frames[:, 1:]
    return batch


def test_shared_encoder_is_trained_by_q_only() -> None:
    learner = _tiny_learner(shared_encoder=True)
    assert learner.encoder is not None
    enc, q, v = (copy.deepcopy(m) for m in (learner.encoder, learner.q, learner.v))
    c, batch = learner.config, _shifted_batch(1)
    with torch.no_grad():
        next_v = v(enc(batch["next_obs"]), batch["text"])
    q1, q2 = q(enc(batch["obs"]), batch["text"])
    a, y = batch["actions"], batch["rewards"] + c.gamma * (1 - batch["terminals"]) * next_v
    q_loss = ((q1[torch.arange(8), a] - y) ** 2).mean() + ((q2[torch.arange(8), a] - y) ** 2).mean()
    expected = torch.autograd.grad(q_loss, list(enc.parameters()))

    metrics = learner.update(batch)  # V and the policy read the encoding detached: no gradient
    assert float(metrics["loss/q"]) == pytest.approx(float(q_loss.detach()), rel=1e-5)
    for p, e in zip(learner.encoder.parameters(), expected, strict=True):
        torch.testing.assert_close(p.grad, e, rtol=1e-4, atol=1e-7)


def test_shared_encoder_refuses_a_next_history_that_is_not_the_shifted_one() -> None:
    learner = _tiny_learner(shared_encoder=True)
    with pytest.raises(ValueError, match="shifted by one step"):
        learner.update(_batch())


def test_history_indices_repeat_the_first_observation_and_use_the_final_one() -> None:
    # two episodes: rows 0-2 (final observation at 5) and rows 3-4 (final at 6)
    last = np.array([False, False, True, False, True])
    final_slot = np.array([0, 0, 5, 0, 6])
    obs, nxt = history_indices(last, final_slot, 3)
    assert obs.tolist() == [[0, 0, 0], [0, 0, 1], [0, 1, 2], [3, 3, 3], [3, 3, 4]]
    assert nxt.tolist() == [[0, 0, 1], [0, 1, 2], [1, 2, 5], [3, 3, 4], [3, 4, 6]]


def test_state_observation_refuses_a_version_1_dataset(make_toy_dataset) -> None:
    with pytest.raises(DatasetError, match="needs the 'state' column.*regenerate"):
        load_transitions(make_toy_dataset(), "reward_sparse", observation="state")


@pytest.mark.parametrize(("observation", "history", "shared"),
                         [("state", 1, False), ("state", 3, False), ("frame", 2, False), ("frame", 1, True)])
def test_observation_kinds_train_checkpoint_and_act_in_the_live_env(
        tiny_babyai: Path, tmp_path: Path, observation: str, history: int, shared: bool) -> None:
    from rayrg.data.generate import GenerateConfig
    from rayrg.envs.babyai import expert_steps
    from rayrg.envs.babyai_env import BabyAITaskEnv
    from rayrg.envs.base import EvalTask
    from rayrg.evaluation.config import EvalConfig
    from rayrg.evaluation.evaluate import run_items
    from rayrg.evaluation.policies import LearnedPolicy
    from rayrg.rl.policy import load_policy

    config = TrainConfig(observation=observation, history=history, shared_encoder=shared, **TINY)
    data, featurizer, info = load_transitions(tiny_babyai, "reward_sparse", observation=observation,
                                              history=history)
    shape = (7, 7, 3) if observation == "state" else (56, 56, 3)
    assert tuple(data.observations.shape[1:]) == shape and data.obs_index.shape == (len(data), history)
    learner = IQLLearner(config, network_spec(config, info, featurizer, int(data.text.shape[-1])))
    for _ in range(2):
        learner.update(data.sample(config.batch_size))
    save_checkpoint(tmp_path, learner, featurizer)
    policy = load_policy(tmp_path)
    assert (policy.kind, policy.history) == (observation, history)

    # Evaluation builds the observation the dataset stored: the first row's, from the live env.
    gen = GenerateConfig(episodes_per_count=2, subtask_counts=[1, 2])
    seed = gen.train_seed(1, 0)
    task = EvalTask("t", "babyai-chain", _instruction(seed), 1, seed, expert_steps(1, seed) or 1,
                    {"env_config": {}})
    env = BabyAITaskEnv()
    first = env.reset(task)
    live = policy.observe([env], first.frame[None])[0]
    np.testing.assert_array_equal(live, data.observations[0].numpy())
    rows = run_items([env], LearnedPolicy(policy), [(task, "fixed", 0)],
                     EvalConfig(min_budget=5, budget_multiplier=0.1))
    assert rows[0]["steps"] == 5 or rows[0]["success"]


def _instruction(seed: int) -> str:
    from rayrg.envs.babyai import make_env, reset_env

    return reset_env(make_env(1), seed)[1]


def test_state_encoder_is_the_sum_of_each_cells_channel_embeddings() -> None:
    """The multi-hot matmul equals the per-channel lookup it replaces, values and gradients
    (a wrong offset, a clamp in the wrong place or a dropped channel breaks it)."""
    from rayrg.rl.networks import STATE_VALUES_PER_CHANNEL, StateEncoder

    torch.manual_seed(0)
    encoder = StateEncoder((7, 7, 3), embed=5, proj=0)
    states = torch.randint(0, STATE_VALUES_PER_CHANNEL + 4, (6, 7, 7, 3), dtype=torch.uint8)  # some over the cap
    weight = encoder.embedding.weight
    out = encoder(states)
    (grad,) = torch.autograd.grad((out * torch.arange(out.shape[1])).sum(), weight)

    capped = states.long().clamp(max=STATE_VALUES_PER_CHANNEL - 1)
    expected = sum(weight[capped[..., c] + c * STATE_VALUES_PER_CHANNEL] for c in range(3)).flatten(1)
    (expected_grad,) = torch.autograd.grad((expected * torch.arange(out.shape[1])).sum(), weight)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(grad, expected_grad)


def test_fused_value_variant_of_bench_iql_matches_todays_update() -> None:
    """bench_iql's fused variant (V(s) and V(s') in one call) trains the same networks to 1e-5,
    so its timing compares like with like."""
    from benchmarks.bench_iql import _fused_value_learner

    today = _tiny_learner()
    fused = _tiny_learner()
    fused.__class__ = _fused_value_learner()
    for seed in range(1, 6):
        a, b = today.update(_batch(seed)), fused.update(_batch(seed))
        assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    for name in ("q", "q_target", "v", "policy"):
        for p, q in zip(getattr(today, name).parameters(), getattr(fused, name).parameters(), strict=True):
            torch.testing.assert_close(p, q, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("overrides", [{}, {"shared_encoder": True}, {"observation": "frame"}])
def test_update_with_inputs_built_once_matches_each_network_building_its_own(overrides) -> None:
    """The multi-hot and instruction word shares, built once per batch and shared by Q, target
    Q, V and the policy (each keeps its own weights), train the same networks to 1e-5 as the
    update where each network builds its own input (a wrong offset, a padding word counted,
    V(s') read from the target's input or one network reading another's weights breaks it)."""
    kind = overrides.get("observation", "state")
    shape = (7, 7, 3) if kind == "state" else (8, 8, 3)

    def learner(prepare: bool) -> IQLLearner:
        config = TrainConfig(**{"observation": kind, "history": 2, "beta": 2.0, "expectile": 0.7,
                                "polyak_tau": 0.3, "lr": 1e-2, "exp_adv_max": 5.0, **TINY, **overrides})
        spec = NetworkSpec(num_actions=6, obs=ObsSpec(kind=kind, shape=shape, history=2,
                                                      channels=[4, 4]).to_dict(),
                           text_kind="tokens", vocab_size=10, feature_dim=0)
        torch.manual_seed(0)
        made = IQLLearner(config, spec)
        with torch.no_grad():  # a target unlike Q, so reading Q's input path in its place would show
            for p in made.q_target.parameters():
                p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.5)
        made._prepare_input = prepare
        return made

    def batch(seed: int) -> dict[str, torch.Tensor]:
        b = _batch(seed)
        seq = torch.randint(0, 20, (8, 3, *shape), generator=torch.Generator().manual_seed(seed),
                            dtype=torch.uint8)  # values over the per-channel cap clamp
        b["obs"], b["next_obs"] = seq[:, :2], seq[:, 1:]  # the next history is this one shifted
        b["text"][:, -2:] = 0  # padding
        return b

    today, built_once = learner(False), learner(True)
    for seed in range(1, 6):
        a, b = today.update(batch(seed)), built_once.update(batch(seed))
        for k in a:
            torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-5)
    for name in ("q", "q_target", "v", "policy"):
        for p, q in zip(getattr(today, name).parameters(), getattr(built_once, name).parameters(), strict=True):
            torch.testing.assert_close(p, q, atol=1e-5, rtol=1e-5)
