"""A test plugin (REPEVAL_PLUGINS=sweep_failing_plugin): a family whose training always fails."""

from encoders.baseline import Baseline
from encoders.registry import register


@register
class Failing(Baseline):
    name = "failing"
    summary = "a baseline whose every training step raises (sweep failure tests)"

    def training_step(self, x):
        raise RuntimeError("boom: this family always fails")
