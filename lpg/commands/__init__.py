"""The command layer: one module per ``lpg`` command, each a tyro dataclass with ``run()`` and a short driver.

A command wires a step, a state and the run harness (``lpg.harness.Run``);
the engines it drives live below it (``training``, ``evaluation``).
"""
