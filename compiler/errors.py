"""The one kind of error a user's mistake may raise: printed as one line, exit 2, no traceback."""


class UserError(Exception):
    """A problem with the request (config, override, dataset, template or cluster answer).

    Each entry of `problems` is one self-contained line, e.g.
    `method.lora.adapter_dim: must be a power of 2 (got 12)`.
    """

    def __init__(self, *problems: str):
        self.problems = [p for p in problems if p]
        super().__init__("\n".join(self.problems))
