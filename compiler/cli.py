"""`python -m ftc`: compile (and submit) a fine-tuning job, or manage the runs already submitted.

    ftc [-m] [OVERRIDE ...]       compile one job (or a sweep with -m); dry_run=true only shows it
    ftc configs                   the model configs and what each supports
    ftc schema                    the JSON Schema of a job config
    ftc status [RUN]              runs and their states, or one run in detail
    ftc logs RUN [-f]             a run's log
    ftc cancel RUN                cancel a run
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence

from ftc.compiler.errors import UserError

EXIT_USAGE = 2


def _configs(args: list[str]) -> int:
    from ftc.compiler.report import configs_table

    print(configs_table())
    return 0


def _schema(args: list[str]) -> int:
    import json

    from ftc.compiler.config.schema import JobConfig

    print(json.dumps(JobConfig.model_json_schema(), indent=2))
    return 0


def _status(args: list[str]) -> int:
    from ftc.compiler.runs.jobs import status_command

    return status_command(args)


def _logs(args: list[str]) -> int:
    from ftc.compiler.runs.jobs import logs_command

    return logs_command(args)


def _cancel(args: list[str]) -> int:
    from ftc.compiler.runs.jobs import cancel_command

    return cancel_command(args)


def _after_training(module: str, command: str, args: list[str]) -> int:
    """generate, chat and export load the model: the training stack is imported only now, and only for them."""
    try:
        import torch  # noqa: F401
    except ImportError:
        message = f"ftc {command} loads the model and needs the training stack: pip install 'ftc[train]'"
        raise UserError(message) from None
    from importlib import import_module

    return getattr(import_module(f"ftc.runtime.{module}"), f"{command}_command")(args)


def _generate(args: list[str]) -> int:
    return _after_training("generate", "generate", args)


def _chat(args: list[str]) -> int:
    return _after_training("generate", "chat", args)


def _export(args: list[str]) -> int:
    return _after_training("export", "export", args)


COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "configs": _configs,
    "schema": _schema,
    "status": _status,
    "logs": _logs,
    "cancel": _cancel,
    "generate": _generate,
    "chat": _chat,
    "export": _export,
}


def run(argv: Sequence[str]) -> int:
    argv = list(argv)
    if argv and argv[0] in ("-h", "--help", "help"):
        print(__doc__.strip())
        return 0
    if argv and argv[0] in COMMANDS:
        return COMMANDS[argv[0]](argv[1:])
    multirun = any(a in ("-m", "--multirun") for a in argv)
    overrides = [a for a in argv if a not in ("-m", "--multirun")]
    unknown = [a for a in overrides if a.startswith("-")]
    if unknown:
        raise UserError(f"unknown option {unknown[0]}; see ftc --help")
    from ftc.compiler.driver import compile_and_run

    return compile_and_run(overrides, multirun)


def main(argv: Sequence[str] | None = None) -> None:
    try:
        code = run(sys.argv[1:] if argv is None else argv)
    except UserError as exc:
        for problem in exc.problems or [str(exc)]:
            print(f"ftc: error: {problem}", file=sys.stderr)
        code = EXIT_USAGE
    except KeyboardInterrupt:
        print("ftc: interrupted", file=sys.stderr)
        code = 130
    except BrokenPipeError:  # `ftc ... | head`: the reader has seen enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    sys.exit(code)
