"""Offline discovery by meta-gradients through K agent updates (LPG; Oh et al. 2020, Sec. 3.2).

Every lifetime advances its agent by K updates with the objective at ``eta``
(differentiable), then a policy-gradient meta-objective is evaluated on a
*fresh* rollout of the updated agent (Oh et al. 2020, eq. 2):

    L(eta) = -mean(log pi_K(a|s) A_norm) - beta0 H(pi_K) + objective.meta_regulariser

with advantages ``A_norm`` from a separate per-lifetime meta-critic (GAE,
gamma 0.99, lambda 0.95, normalised per lifetime; GROOVE's reimplementation).
The meta-gradient is the mean of the per-lifetime meta-gradients over the
lifetime axis only (``meta_gradient``; computed as one gradient of the summed
per-lifetime losses, which is cheaper than ``vmap(grad)``), then applied with clipped meta-Adam
(``apply``). Lifetimes restart with fresh agents (new task instance, new
hyper-parameters) when they have done ``lifetime_updates`` updates; initial
ages are staggered so restarts are spread out.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import chex
import jax
import jax.numpy as jnp
import optax

from lpg.rollout import episode_stats
from lpg.types import Rollout
from objectives.base import Eta, Metrics
from objectives.losses import entropy, lambda_returns, log_prob, normalise
from training.guards import SKIP_KEY, guarded_apply
from training.offline.population import Population, tree_where
from training.offline.state import EnvGroup, LifetimeState, OfflineState

__all__ = ["GradEstimator"]

MAX_UNROLLED_INNER_UPDATES = 10
"""K x environment groups up to which the K agent updates are unrolled; beyond, a rolled scan.

Every group is its own copy of the inner loop in the one jitted meta-step, so
the program grows with K times the number of groups, and so does the compile:
the ``broad`` set's 14 groups at K = 5 compiled in 125 s rolled and had not
finished after 8 minutes unrolled (2 CPU cores). The default two groups at
K = 5 stay unrolled, where it saves about a fifth of the meta-step."""


@dataclasses.dataclass(frozen=True, eq=False)
class GradEstimator:
    """Meta-gradients through K agent updates; ``init(key)`` and ``step(state)`` are pure.

    Attributes:
      population: the agents, their groups and updates.
      meta_tx: clipped meta-Adam.
      critic_tx: the meta-critics' Adam.
    """

    population: Population
    meta_tx: optax.GradientTransformation
    critic_tx: optax.GradientTransformation

    @classmethod
    def create(cls, population: Population) -> GradEstimator:
        c = population.config
        chain = [optax.clip_by_global_norm(c.meta_grad_clip)] if c.meta_grad_clip > 0 else []
        return cls(population, optax.chain(*chain, optax.adam(c.meta_lr)), optax.adam(c.critic_lr))

    @property
    def objective(self):
        return self.population.objective

    @property
    def config(self):
        return self.population.config

    @property
    def groups(self) -> tuple[EnvGroup, ...]:
        return self.population.groups

    @property
    def beta0(self) -> float:
        """Weight of the policy-entropy bonus of the meta-objective."""
        c = self.config
        return float(self.objective.meta_entropy_weight if c.meta_entropy_weight is None else c.meta_entropy_weight)

    @property
    def agent_steps_per_meta_step(self) -> int:
        """Environment steps taken by all agents in one meta-step (K inner rollouts and the outer one)."""
        c = self.config
        return c.num_lifetimes * (c.inner_updates + 1) * c.num_envs * c.unroll_length

    # -- state -----------------------------------------------------------------
    def init(self, key: chex.PRNGKey) -> OfflineState:
        """A random objective and staggered fresh lifetimes."""
        k_eta, k_life, _, key = jax.random.split(key, 4)
        eta = self.objective.init(k_eta)
        lifetimes = tuple(
            self.population.init_group(group, jax.random.fold_in(k_life, g), staggered=True)
            for g, group in enumerate(self.groups)
        )
        return OfflineState(eta, self.meta_tx.init(eta), lifetimes, None, key, jnp.zeros([], jnp.int32))

    @functools.cached_property
    def jit_init(self) -> Callable[[chex.PRNGKey], OfflineState]:
        return jax.jit(self.init)

    @functools.cached_property
    def jit_step(self) -> Callable[[OfflineState], tuple[OfflineState, Metrics]]:
        return jax.jit(self.step)

    # -- estimate ----------------------------------------------------------------
    def lifetime_meta_loss(self, group: EnvGroup, eta: Eta, life: LifetimeState):
        """Meta-loss of one lifetime after K agent updates with ``eta``; aux: the advanced lifetime.

        ``L = -mean(log pi_K(a|s) A_norm) - beta0 H(pi_K) + meta_regulariser``
        on a fresh rollout of the updated agent (Oh et al. 2020, eq. 2).
        """
        c, pop = self.config, self.population

        def inner(carry, _):
            params, opt_state, actor, key = carry
            key, k = jax.random.split(key)
            actor, rollout = pop.act(group, params, actor, k)
            params, opt_state, metrics = pop.agent_update(group, params, opt_state, eta, rollout, life.lr, life.hyper)
            return (params, opt_state, actor, key), (rollout, metrics)

        # Unrolled (for K x groups up to MAX_UNROLLED_INNER_UPDATES): a rolled loop stacks each update's
        # residuals for the backward pass into [K, ...] buffers (zero-filled, written and read back by dynamic
        # slices), which cost about a fifth of the meta-step on CPU at K = 5.
        unrolled = c.inner_updates * len(self.groups) <= MAX_UNROLLED_INNER_UPDATES
        unroll = c.inner_updates if unrolled else 1
        (params, opt_state, actor, key), (rollouts, inner_metrics) = jax.lax.scan(
            inner, (life.params, life.opt_state, life.actor, life.key), None, length=c.inner_updates, unroll=unroll
        )
        key, k = jax.random.split(key)
        actor, rollout = pop.act(group, params, actor, k)
        out = group.agent.apply(params, rollout.observation)
        value = jax.lax.stop_gradient(group.critic.apply(life.critic_params, rollout.observation).value)
        r_t, discount_t = rollout.reward[1:], c.critic_gamma * rollout.discount[1:]
        adv = normalise(lambda_returns(r_t, discount_t, value[1:], c.critic_lambda) - value[:-1])
        logits = out.logits[:-1]
        pg_loss = -jnp.mean(log_prob(logits, rollout.action[:-1]) * adv)
        ent = jnp.mean(entropy(logits))
        reg, reg_metrics = self.objective.meta_regulariser(eta, rollout, out)
        loss = pg_loss - self.beta0 * ent + reg
        all_rollouts = jax.tree.map(lambda xs, x: jnp.concatenate([xs, x[None]], 0), rollouts, rollout)
        life = life.replace(
            params=params, opt_state=opt_state, actor=actor, key=key, update_count=life.update_count + c.inner_updates
        )
        metrics = {
            "meta_loss": loss,
            "meta_pg_loss": pg_loss,
            "policy_entropy": ent,
            **{f"meta_{k}": v for k, v in reg_metrics.items()},
            **{f"agent_{k}": jnp.mean(v) for k, v in inner_metrics.items()},
        }
        return loss, (life, jax.lax.stop_gradient(all_rollouts), metrics)

    def train_critic(self, group: EnvGroup, life: LifetimeState, rollouts: Rollout) -> LifetimeState:
        """TD(lambda) value regression of the meta-critic on each rollout [K+1, T+1, B] in turn."""
        c = self.config

        def body(carry, rollout):
            params, opt_state = carry

            def loss_fn(p):
                v = group.critic.apply(p, rollout.observation).value
                discount_t = c.critic_gamma * rollout.discount[1:]
                target = lambda_returns(rollout.reward[1:], discount_t, jax.lax.stop_gradient(v[1:]), c.critic_lambda)
                return 0.5 * jnp.mean(jnp.square(jax.lax.stop_gradient(target) - v[:-1]))

            grads = jax.grad(loss_fn)(params)
            updates, opt_state = self.critic_tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), None

        (params, opt_state), _ = jax.lax.scan(body, (life.critic_params, life.critic_opt_state), rollouts)
        return life.replace(critic_params=params, critic_opt_state=opt_state)

    def group_meta_grads(self, group: EnvGroup, eta: Eta, lives: LifetimeState):
        """Per-lifetime meta-gradients [L_g, ...] of one group, and advanced lifetimes."""
        grad_fn = jax.grad(functools.partial(self.lifetime_meta_loss, group), has_aux=True)
        grads, (lives_new, rollouts, metrics) = jax.vmap(grad_fn, in_axes=(None, 0))(eta, lives)
        return grads, lives_new, rollouts, metrics

    def group_meta_grad_sum(self, group: EnvGroup, eta: Eta, lives: LifetimeState):
        """The sum over the group's lifetimes of their meta-gradients (one ``grad`` of the summed loss), and
        advanced lifetimes.

        Equal to summing ``group_meta_grads``' per-lifetime gradients up to float rounding, but cheaper:
        the meta-network's weight gradients are accumulated over all lifetimes in one matmul per step
        rather than one per lifetime.
        """

        def total(eta):
            losses, aux = jax.vmap(functools.partial(self.lifetime_meta_loss, group), in_axes=(None, 0))(eta, lives)
            return jnp.sum(losses), aux

        grad_sum, (lives_new, rollouts, metrics) = jax.grad(total, has_aux=True)(eta)
        return grad_sum, lives_new, rollouts, metrics

    def meta_gradient(self, state: OfflineState, per_lifetime: bool = True):
        """The meta-gradient estimate: the mean of per-lifetime meta-gradients over the lifetime axis only.

        Returns ``(meta_grad, per_lifetime_grads [L, ...] (None unless
        ``per_lifetime``), advanced lifetimes (critics trained, not yet
        restarted), metrics)``.

        ``meta_grad`` is computed as one gradient of the summed losses
        (``group_meta_grad_sum``), not as the mean of ``per_lifetime_grads``
        (equal up to float rounding); the per-lifetime gradients are a separate
        computation, left out of ``step`` (XLA would remove it, but tracing it
        costs compile time).
        """
        all_grads, grad_sums, new_lifetimes, metrics = [], [], [], {}
        for group, lives in zip(self.groups, state.lifetimes):
            if per_lifetime:
                all_grads.append(self.group_meta_grads(group, state.eta, lives)[0])
            grad_sum, lives, rollouts, m = self.group_meta_grad_sum(group, state.eta, lives)
            lives = jax.vmap(functools.partial(self.train_critic, group))(lives, rollouts)
            grad_sums.append(grad_sum)
            new_lifetimes.append(lives)
            stats = jax.vmap(episode_stats)(jax.tree.map(lambda x: x.reshape((-1, *x.shape[2:])), rollouts))
            count = jnp.sum(stats["episode_count"])
            metrics[f"return/{group.name}"] = jnp.sum(stats["episode_return_sum"]) / jnp.maximum(count, 1.0)
            for k, v in m.items():
                metrics.setdefault(k, []).append(v)
        per_lifetime_grads = jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=0), *all_grads) if all_grads else None
        num_lifetimes = sum(lives.update_count.shape[0] for lives in state.lifetimes)
        meta_grad = jax.tree.map(lambda *xs: sum(xs) / num_lifetimes, *grad_sums)
        metrics = {k: jnp.mean(jnp.concatenate(v)) if isinstance(v, list) else v for k, v in metrics.items()}
        return meta_grad, per_lifetime_grads, tuple(new_lifetimes), metrics

    # -- apply ---------------------------------------------------------------------
    def apply(self, state: OfflineState, meta_grad: Eta) -> tuple[Any, Any, chex.Array]:
        """``(eta, meta_opt_state, skipped)`` after one clipped meta-Adam step on ``meta_grad``.

        A non-finite meta-gradient skips the step (eta and meta-Adam kept; ``skipped`` = 1).
        """
        updates, meta_opt_state = self.meta_tx.update(meta_grad, state.meta_opt_state, state.eta)
        eta = optax.apply_updates(state.eta, updates)
        (eta, meta_opt_state), skipped = guarded_apply(
            meta_grad, (eta, meta_opt_state), (state.eta, state.meta_opt_state)
        )
        return eta, meta_opt_state, skipped

    def restart_finished(self, lifetimes: tuple[LifetimeState, ...], key: chex.PRNGKey) -> tuple[LifetimeState, ...]:
        """Lifetimes that reached their length (``lifetime_updates`` or drawn) replaced by fresh ones."""
        restarted = []
        for g, (group, lives) in enumerate(zip(self.groups, lifetimes)):
            done = lives.update_count >= lives.length
            fresh = self.population.init_group(group, jax.random.fold_in(key, g), staggered=False)
            restarted.append(tree_where(done, fresh, lives))
        return tuple(restarted)

    def step(self, state: OfflineState) -> tuple[OfflineState, Metrics]:
        """One meta-step: estimate the meta-gradient, restart finished lifetimes, apply meta-Adam."""
        key, k_restart = jax.random.split(state.key)
        meta_grad, _, lifetimes, metrics = self.meta_gradient(state, per_lifetime=False)
        lifetimes = self.restart_finished(lifetimes, k_restart)
        eta, meta_opt_state, meta_skipped = self.apply(state, meta_grad)
        metrics["nonfinite_meta_skipped"] = meta_skipped
        metrics[SKIP_KEY] = jnp.maximum(meta_skipped, (metrics[f"agent_{SKIP_KEY}"] > 0).astype(jnp.float32))
        metrics["meta_grad_norm"] = optax.tree.norm(meta_grad)
        metrics.update(self.objective.describe_eta(eta))
        new_state = state.replace(
            eta=eta, meta_opt_state=meta_opt_state, lifetimes=lifetimes, key=key, step=state.step + 1
        )
        return new_state, metrics
