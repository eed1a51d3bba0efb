"""lpg's XLA flags (lpg/xla_flags.py): when they are added, that importing training.atari adds Atari's, that the
command line adds the one for every command, and that XLA accepts them."""

from __future__ import annotations

import os
import subprocess
import sys

from lpg.xla_flags import OPT_OUT, REGION_ANALYSIS, YNN_OFF, add_region_analysis, add_ynn_off


def test_the_ynn_flag_is_appended_to_the_users_flags_once():
    environ = {"XLA_FLAGS": "--xla_backend_optimization_level=0"}
    assert add_ynn_off(environ, jaxlib=(0, 10))
    assert environ["XLA_FLAGS"] == f"--xla_backend_optimization_level=0 {YNN_OFF}"
    assert not add_ynn_off(environ, jaxlib=(0, 10))  # already there: not added twice
    assert environ["XLA_FLAGS"].count(YNN_OFF) == 1
    empty: dict[str, str] = {}
    assert add_ynn_off(empty, jaxlib=(0, 10)) and empty == {"XLA_FLAGS": YNN_OFF}


def test_the_users_own_setting_the_opt_out_and_unmeasured_jaxlibs_are_left_alone():
    own = {"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type=individual_dot"}
    assert not add_ynn_off(own, jaxlib=(0, 10))
    assert own == {"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type=individual_dot"}
    opted_out = {OPT_OUT: "0"}
    assert not add_ynn_off(opted_out, jaxlib=(0, 10)) and "XLA_FLAGS" not in opted_out
    newer: dict[str, str] = {}
    assert not add_ynn_off(newer, jaxlib=(0, 11)) and newer == {}


def _run(code: str) -> list[str]:
    environ = {key: value for key, value in os.environ.items() if key not in ("XLA_FLAGS", OPT_OUT)}
    done = subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-500:]
    return done.stdout.split()


def test_importing_atari_training_sets_the_flag_and_xla_accepts_it():
    # XLA aborts the process at start-up on a flag it does not know: this fails if the pinned jaxlib drops it
    code = (
        "import os, jax, training.atari as a; print(a.XLA_YNN_OFF, os.environ['XLA_FLAGS']); "
        "print(float(jax.numpy.ones(3).sum()))"
    )
    assert _run(code) == ["True", YNN_OFF, "3.0"]


def test_the_toy_mdps_and_a_started_backend_are_left_alone():
    # importing lpg or the toy trainers adds nothing; once JAX's backend runs, for_atari reports that it is too late
    code = (
        "import os, lpg, training.actor_critic, jax; jax.numpy.ones(1).block_until_ready(); "
        "print(os.environ.get('XLA_FLAGS', 'none')); import training.atari as a; print(a.XLA_YNN_OFF)"
    )
    assert _run(code) == ["none", "False"]


def test_the_region_analysis_flag_follows_the_same_rules():
    environ: dict[str, str] = {"XLA_FLAGS": YNN_OFF}
    assert add_region_analysis(environ, jaxlib=(0, 10)) and environ["XLA_FLAGS"] == f"{YNN_OFF} {REGION_ANALYSIS}"
    assert not add_region_analysis(environ, jaxlib=(0, 10))  # not twice
    own = {"XLA_FLAGS": "--xla_cpu_copy_insertion_use_region_analysis=false"}
    assert not add_region_analysis(own, jaxlib=(0, 10)) and own["XLA_FLAGS"].endswith("=false")
    assert not add_region_analysis({OPT_OUT: "0"}, jaxlib=(0, 10))
    assert not add_region_analysis({}, jaxlib=(0, 11))


def test_the_command_line_adds_the_flag_before_the_backend_starts_and_xla_accepts_it():
    code = (
        "import os, lpg.cli; from lpg import xla_flags; print(xla_flags.for_every_command(), os.environ['XLA_FLAGS']); "
        "import jax; print(float(jax.numpy.ones(3).sum()), xla_flags.for_every_command())"
    )
    assert _run(code) == ["True", REGION_ANALYSIS, "3.0", "False"]


def test_atari_takes_back_the_region_analysis_flag_the_command_line_added():
    code = (
        "import os, lpg.cli; from lpg import xla_flags; xla_flags.for_every_command(); "
        "import training.atari as a; print(a.XLA_YNN_OFF, os.environ['XLA_FLAGS'])"
    )
    assert _run(code) == ["True", YNN_OFF]
