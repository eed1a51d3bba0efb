"""Transfer evaluation of objectives: fresh agents trained by a frozen objective vs A2C and random.

``evaluation.evaluate`` holds the scoring (``evaluate_objective``), its tables
and plots; ``lpg evaluate`` (``lpg.commands.evaluate``) wires it into a run folder.
"""
