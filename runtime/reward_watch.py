"""GRPO that never earns a reward learns nothing (every group's advantage is zero) yet looks healthy: say so.

After `ZERO_REWARD_STEPS` logged steps in a row with a mean reward of exactly 0, one warning goes to
the log and to status.json's `warnings`; the run goes on (a reward may still appear).
"""

from __future__ import annotations

from transformers import TrainerCallback

from ftc.runtime import distributed
from ftc.runtime.console import CONSOLE

ZERO_REWARD_STEPS = 5


def zero_reward_message(steps: int) -> str:
    return (
        f"GRPO reward 0 for {steps} steps in a row: no completion earns any reward, so nothing is learned; "
        "check method.reward against what the model writes (exact match is case- and whitespace-exact unless "
        "method.reward.normalize=true), or start from a model that sometimes gets it right"
    )


class ZeroRewardWarning(TrainerCallback):
    def __init__(self, status=None, steps: int = ZERO_REWARD_STEPS):
        self.status = status
        self.steps = steps
        self.zero_run = 0
        self.warned = False

    def on_log(self, args, state, control, logs=None, **kwargs):
        reward = (logs or {}).get("reward")
        if reward is None:
            return
        self.zero_run = self.zero_run + 1 if reward == 0 else 0
        if self.zero_run >= self.steps and not self.warned:
            self.warned = True
            message = zero_reward_message(self.zero_run)
            if distributed.is_main():
                CONSOLE.say(f"[ftc] warning: {message}")
            if self.status is not None:
                self.status.update(warnings=[*self.status.data.get("warnings", []), message])
                self.status.write()
