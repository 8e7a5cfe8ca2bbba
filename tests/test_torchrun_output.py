"""The local executor's terminal: a failed worker's own line, not torchrun's ChildFailedError report."""

from __future__ import annotations

from ftc.compiler.submit.torchrun_output import ChildFailedFilter

# What torchrun 2.x printed after a worker refused its model (logs/local.out of a real run).
TORCHRUN_FAILURE = b"""[ftc] error: model.path: /m exists but is not this tiny model; delete it
E1206 13:46:51.784000 31963 torch/distributed/elastic/multiprocessing/api.py:1002] failed (exitcode: 2) local_rank: 0
Traceback (most recent call last):
  File "<frozen runpy>", line 198, in _run_module_as_main
  File "/venv/lib/python3.11/site-packages/torch/distributed/launcher/api.py", line 383, in launch_agent
    raise ChildFailedError(
torch.distributed.elastic.multiprocessing.errors.ChildFailedError: 
============================================================
ftc.runtime FAILED
------------------------------------------------------------
Failures:
  <NO_OTHER_FAILURES>
------------------------------------------------------------
Root Cause (first observed failure):
[0]:
  rank      : 0 (local_rank: 0)
  exitcode  : 2 (pid: 32014)
============================================================
"""


def _through(data: bytes, size: int) -> bytes:
    shown = ChildFailedFilter()
    out = b"".join(shown.feed(data[i:i + size]) for i in range(0, len(data), size))
    return out + shown.flush()


def test_only_the_workers_line_reaches_the_terminal_in_any_chunking():
    for size in (1, 7, 64, 65536):
        assert _through(TORCHRUN_FAILURE, size) == b"[ftc] error: model.path: /m exists but is not this tiny model; delete it\n"


def test_other_tracebacks_progress_and_text_pass_unchanged():
    other = b"Traceback (most recent call last):\n  File \"x.py\", line 1\nValueError: boom\nafter\n"
    assert _through(other, 5) == other
    progress = ChildFailedFilter()
    assert progress.feed(b"step 1/4\r") == b"step 1/4\r"  # a partial line is shown at once
    assert progress.feed(b"Trace") == b""  # it may start a traceback: held until the line ends
    assert progress.feed(b"s\n") == b"Traces\n"
