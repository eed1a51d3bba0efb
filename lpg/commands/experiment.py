"""``lpg experiment NAME``: the named online-discovery experiments (training/online.py) and ``transfer``
(a saved objective on new tasks, frozen against adapted: lpg/commands/transfer.py)."""

from __future__ import annotations

import dataclasses
import json
from typing import Annotated

import tyro

from lpg.errors import InvalidConfigError, unknown_name_error

__all__ = ["ExperimentCommand"]


@dataclasses.dataclass(frozen=True)
class ExperimentCommand:
    """Run a named experiment: mrp-gamma, catch-frodo, snake-metagrad, snake-variance, transfer.

    Writes to --out: config.json, metrics.jsonl, summary.json and plots.
    mrp-gamma: summary "gammas" (10 final per-state discounts), gammas.png.
    catch-frodo: "frodo_return" and "a2c_return". snake-metagrad: "final_return"
    and "final_meta_parameters". snake-variance: "std_ratio" keyed 1,3,5,10,3-mix,5-mix.
    transfer (--checkpoint CKPT --envs SPEC): per environment, A2C, the saved objective
    frozen, the same adapted online (--inner-steps, --mix, --init-pull, --outer-critic set its
    meta-gradient), and FRODO from scratch at equal steps and seeds
    ("final_return"), each arm a run of its own in OUT/<env>/<arm>, with learning-curve
    and eta-distance plots.
    """

    name: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="NAME")]
    """Experiment: mrp-gamma, catch-frodo, snake-metagrad, snake-variance or transfer."""
    out: str = "runs/experiment"
    """Output folder (created; must be empty or hold this same run)."""
    seeds: int | None = None
    """Seeds run in parallel under vmap (default: the preset's)."""
    seed: int = 0
    """First random seed."""
    inner_steps: int | None = None
    """n of the n-step meta-gradient (default: preset; 0 = fixed baseline for snake-metagrad; transfer: the adapted arm's, default 1)."""
    mix: bool = False
    """Use the mixing estimator (Bonnet et al. eq. 10) with 1/(1-k) = n instead of plain n-step (transfer: in the adapted arm)."""
    mix_coefficient: float | None = None
    """kappa of the mixing estimator (Bonnet et al. eq. 10), in [0, 1]; needs --mix; default 1 - 1/n (transfer: the adapted arm's)."""
    monte_carlo: int | None = None
    """Meta-gradients averaged per meta-update (default: preset)."""
    steps: int | None = None
    """Environment steps per seed; for mrp-gamma the number of meta-updates (default: preset)."""
    checkpoints: int | None = None
    """snake-variance only: points along the run where the spread is measured (default: preset, 3)."""
    estimates: int | None = None
    """snake-variance only: independent meta-gradient estimates per estimator and point (default: preset, 32; Bonnet et al. use 96)."""
    estimate_batch: int | None = None
    """snake-variance only: estimates computed at once under vmap; memory grows with it, the result does not depend on it (default: preset, 4: one batch of 5-step estimates peaks at 5.8 GB, of 8 at 8.2 GB; the whole default run at 6.35 GB)."""
    checkpoint: str | None = None
    """transfer only: the saved objective to transfer (e.g. checkpoints/lpg-toy-v1)."""
    envs: str | None = None
    """transfer only: the new tasks, names, globs or sets (default: chain/long,catch)."""
    init_pull: float = 0.0
    """transfer only: --init-pull of the adapted arm (see `lpg discover online --help`)."""
    outer_critic: str = "auto"
    """transfer only: --outer-critic of the adapted arm (agent reproduces runs made before the outer critic; see `lpg discover online --help`)."""
    progress: bool = True
    """Show progress on stderr."""

    def run(self) -> int:
        from training.online import EXPERIMENTS, run_experiment

        if self.name == "transfer":
            return self._transfer()
        if self.name not in EXPERIMENTS:
            raise unknown_name_error("experiment", self.name, [*EXPERIMENTS, "transfer"])
        transfer_only = (("--checkpoint", self.checkpoint), ("--envs", self.envs), ("--init-pull", self.init_pull),
                         ("--outer-critic", self.outer_critic != "auto"))  # fmt: skip
        for flag, value in transfer_only:
            if value:
                raise InvalidConfigError(f"{flag} applies to lpg experiment transfer only")

        summary = run_experiment(
            self.name,
            self.out,
            seed=self.seed,
            seeds=self.seeds,
            inner_steps=self.inner_steps,
            mix=self.mix or None,
            mix_k=self.mix_coefficient,
            monte_carlo=self.monte_carlo,
            steps=self.steps,
            progress=self.progress,
            checkpoints=self.checkpoints,
            estimates=self.estimates,
            estimate_batch=self.estimate_batch,
        )
        keys = {
            "mrp-gamma": ("gammas", "solved", "wall_s"),
            "catch-frodo": ("frodo_return", "a2c_return", "steps"),
            "snake-metagrad": ("final_return", "final_meta_parameters", "steps"),
            "snake-variance": ("std_ratio",),
        }[self.name]
        shown = {k: summary[k] for k in keys}
        print(f"{self.name}: {json.dumps(shown, default=str)}; results in {self.out}/summary.json")
        return 0

    def _transfer(self) -> int:
        from lpg.commands.transfer import run_transfer

        unused = {"--monte-carlo": self.monte_carlo, "--checkpoints": self.checkpoints, "--estimates": self.estimates,
                  "--estimate-batch": self.estimate_batch}  # fmt: skip
        for flag, value in unused.items():
            if value not in (None, False):
                raise InvalidConfigError(f"{flag} does not apply to lpg experiment transfer")
        summary = run_transfer(
            self.checkpoint or "", self.envs or "chain/long,catch", self.out, steps=self.steps,
            seeds=self.seeds or 3, seed=self.seed, init_pull=self.init_pull, outer_critic=self.outer_critic,
            inner_steps=1 if self.inner_steps is None else self.inner_steps, mix=self.mix, mix_k=self.mix_coefficient,
            progress=self.progress,
        )  # fmt: skip
        for env, arms in summary["final_return"].items():
            shown = "  ".join(f"{arm} {value:.3f}" if value is not None else f"{arm} -" for arm, value in arms.items())
            print(f"transfer {env}: {shown}")
        print(f"results in {self.out}/summary.json")
        return 0
