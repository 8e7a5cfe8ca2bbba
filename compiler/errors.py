"""The one kind of error a user's mistake may raise: printed as one line, exit 2, no traceback."""


class UserError(Exception):
    """A problem with the request (config, override, dataset, template or cluster answer).

    Each entry of `problems` is one self-contained line, e.g.
    `method.lora.adapter_dim: must be a power of 2 (got 12)`.
    """

    def __init__(self, *problems: str):
        # One line each, whatever a value held: control characters are shown escaped, never printed raw.
        self.problems = [p.translate(_ESCAPES) for p in problems if p]
        super().__init__("\n".join(self.problems))


_ESCAPES = {c: ascii(chr(c))[1:-1] for c in (*range(32), 127)}
