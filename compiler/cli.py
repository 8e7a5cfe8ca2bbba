"""`ftc` (or `python -m ftc`): compile (and submit) a fine-tuning job, or manage the runs already submitted.

Hydra's conventions hold: `key=value` overrides, `group=option`, `-m` for a sweep, `--cfg job|hydra|all`
with `--resolve` and `--package`, `--info`, `--shell-completion install=bash|zsh`, `--version`. Commands are
the functions in COMMANDS; the first line of each one's docstring is its line in `ftc --help`.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Callable, Sequence

from ftc.compiler.errors import UserError

EXIT_USAGE = 2


def _configs(args: list[str]) -> int:
    """the model configs by the names you type, with URNs and options (--urns: one row per URN)"""
    from ftc.compiler.report import configs_by_name, configs_table

    names = [a for a in args if not a.startswith("-")]
    flags = [a for a in args if a.startswith("-")]
    if any(f not in ("--urns", "-h", "--help") for f in flags):
        bad = next(f for f in flags if f not in ("--urns", "-h", "--help"))
        raise UserError(f"configs: unknown option {bad}; usage: ftc configs [NAME ...] [--urns]")
    if "-h" in flags or "--help" in flags:
        print("usage: ftc configs [NAME ...] [--urns]\n\n" + _doc_line(_configs))
        return 0
    print(configs_table() if "--urns" in flags else configs_by_name(names))
    return 0


def _schema(args: list[str]) -> int:
    """the JSON Schema of a job config"""
    import json

    from ftc.compiler.config.schema import JobConfig

    print(json.dumps(JobConfig.model_json_schema(), indent=2))
    return 0


def _status(args: list[str]) -> int:
    """runs and their states (--all: dry runs too), or one run in detail: ftc status [RUN] [--all]"""
    from ftc.compiler.runs.jobs import status_command

    return status_command(args)


def _compare(args: list[str]) -> int:
    """runs side by side (what differs, state, losses, eval, output): ftc compare SWEEP_ID|RUN... [--sort KEY] [--json]"""
    from ftc.compiler.runs.compare import compare_command

    return compare_command(args)


def _logs(args: list[str]) -> int:
    """a run's log: ftc logs RUN [-f]"""
    from ftc.compiler.runs.jobs import logs_command

    return logs_command(args)


def _cancel(args: list[str]) -> int:
    """cancel a run (a sweep's array job cancels every point): ftc cancel RUN"""
    from ftc.compiler.runs.jobs import cancel_command

    return cancel_command(args)


def _serve(args: list[str]) -> int:
    """the NeMo Customizer job API and run dashboard: ftc serve [--host H] [--port P] [OVERRIDE ...]"""
    from ftc.compiler.api.serve import serve_command

    return serve_command(args)


def _after_training(module: str, command: str, args: list[str]) -> int:
    """generate, chat and export load the model: the training stack is imported only now, and only for them."""
    from ftc.compiler.submit.local import has_torch

    if not has_torch():
        message = f"ftc {command} loads the model and needs the training stack: pip install 'ftc[train]'"
        raise UserError(message)
    from importlib import import_module

    return getattr(import_module(f"ftc.runtime.{module}"), f"{command}_command")(args)


def _generate(args: list[str]) -> int:
    '''the trained model's answer to one prompt: ftc generate RUN "PROMPT"'''
    return _after_training("generate", "generate", args)


def _chat(args: list[str]) -> int:
    """a conversation with the trained model (/reset, /exit): ftc chat RUN"""
    return _after_training("generate", "chat", args)


def _export(args: list[str]) -> int:
    """the adapter or a merged model, its card and vllm serve line: ftc export RUN [--merge] [--to DIR]"""
    return _after_training("export", "export", args)


def _site(args: list[str]) -> int:
    """for admins: check a site before users meet it (exit 1 on problems): ftc site check [FOLDER ...]"""
    from ftc.compiler.sitecheck import site_command

    return site_command(args)


COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "configs": _configs,
    "schema": _schema,
    "status": _status,
    "compare": _compare,
    "logs": _logs,
    "cancel": _cancel,
    "serve": _serve,
    "generate": _generate,
    "chat": _chat,
    "export": _export,
    "site": _site,
}

RUN_COMMANDS = ("status", "compare", "logs", "cancel", "generate", "chat", "export")  # read run folders


def root_option(args: list[str]) -> list[str]:
    """`output_root=DIR`, as the main command takes it, is --root DIR for the commands that read runs."""
    found = [a for a in args if a.startswith("output_root=")]
    if len(found) + sum(a == "--root" or a.startswith("--root=") for a in args) > 1:
        raise UserError("output_root: given more than once (output_root=DIR or --root DIR, once)")
    if not found:
        return args
    from ftc.compiler.runs.runstate import output_root

    value = found[0].partition("=")[2]
    output_root(value)  # the same checks as --root
    return [a for a in args if a != found[0]] + ["--root", value]


HYDRA_ONLY = {  # Hydra flags that have no meaning in ftc, and why
    "--config-path": "ftc's configs are its own conf/ plus the site folders in $FTC_SITE_CONFIG (ftc --info searchpath)",
    "--config-name": "ftc's primary config is always ftc.yaml; pick groups instead (model=..., method=...)",
    "--config-dir": "site folders go in $FTC_SITE_CONFIG, colon-separated (ftc --info searchpath)",
    "--experimental-rerun": "rerun a run by its run folder instead: the same command again resumes or reports it",
}
SHORT = {"-c": "--cfg", "-p": "--package", "-i": "--info", "-sc": "--shell-completion", "-h": "--help",
         "-m": "--multirun", "-r": "--run", "-cp": "--config-path", "-cn": "--config-name", "-cd": "--config-dir"}


def _doc_line(command: Callable) -> str:
    return ((command.__doc__ or "").strip().splitlines() or [""])[0]


def usage() -> str:
    """`ftc --help`: how to call it, the config groups with their options, the commands and the flags."""
    from ftc.compiler.config.catalog import USER_GROUPS, default_choices, group_options

    options, defaults = group_options(), default_choices()
    width = max(map(len, (*USER_GROUPS, *COMMANDS)))
    groups = [f"  {g.ljust(width)}  " + ", ".join(f"{o} (default)" if o == defaults.get(g) else o
                                                  for o in _default_first(options[g], defaults.get(g)))
              for g in USER_GROUPS]
    commands = [f"  {name.ljust(width)}  {_doc_line(fn)}" for name, fn in COMMANDS.items()]
    return "\n".join([
        "ftc: compile a fine-tuning job into a checked plan and an exact sbatch script, and submit it.",
        "",
        "usage: ftc [-m] [OVERRIDE ...]      compile and submit one job (a sweep with -m); dry_run=true only shows it",
        "       ftc COMMAND [ARG ...]        see the commands below",
        "       ftc --cfg job|hydra|all [--resolve] [-p KEY] [OVERRIDE ...]",
        "       ftc --info [searchpath|groups|choices] [OVERRIDE ...]",
        "",
        "Config groups (pick one option each with group=option):",
        *groups,
        "",
        "Overrides (Hydra syntax):",
        "  key=value          set a field: method.learning_rate=2e-4 method.lora.adapter_dim=16 (all: ftc --cfg job)",
        "  model.urn=URN      pick a model config by its URN, e.g. meta/llama-3.1-8b-instruct@v1.0.0+H100",
        "  -m key=a,b,c       a sweep over every combination: one Slurm job array",
        "",
        "Commands:",
        *commands,
        "",
        "Options:",
        *_options_help(),
        "",
        "Every field and what it means: the README's config reference, or ftc schema.",
    ])


def _default_first(options: list[str], default: str | None) -> list[str]:
    return sorted(options, key=lambda o: (o != default, o))


def _options_help() -> list[str]:
    return [
        "  -h, --help                    this help",
        "  --version                     ftc's version, and Hydra's and Python's",
        "  -m, --multirun                compile a sweep: comma-separated values give one point per combination",
        "  -c, --cfg job|hydra|all       print the composed config and stop: job (what you can override), hydra",
        "                                (search path and choices), all (both, and the model's training_options)",
        "  --resolve                     with --cfg: resolve ${...} interpolations",
        "  -p, --package KEY             with --cfg: only that part of the config, e.g. -p method",
        "  -i, --info [WHAT]             the search path, the config groups and options, the choices these",
        "                                overrides make, and the site folders ($FTC_SITE_CONFIG)",
        "  -sc, --shell-completion install=bash|zsh",
        "                                print the completion script: eval \"$(ftc -sc install=bash)\"",
        "  --hydra-help                  which of Hydra's own flags ftc takes",
    ]


def hydra_help() -> str:
    lines = ["ftc reads Hydra's flags itself (it composes with Hydra's compose API, not @hydra.main):", "",
             *_options_help(), "", "Not taken, and why:"]
    lines += [f"  {flag:<29} {why}" for flag, why in HYDRA_ONLY.items()]
    lines.append("  hydra.* overrides             ftc writes run folders itself; see the README")
    return "\n".join(lines)


def version() -> str:
    import platform

    import hydra
    import omegaconf

    import ftc

    return f"ftc {ftc.__version__} (Hydra {hydra.__version__}, OmegaConf {omegaconf.__version__}, Python {platform.python_version()})"


def _parse_flags(argv: list[str]) -> tuple[dict[str, str | bool], list[str]]:
    """Hydra-style flags anywhere on the line -> (flags, overrides)."""
    flags: dict[str, str | bool] = {}
    overrides: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if not arg.startswith("-") or arg == "-":
            overrides.append(arg)
            continue
        name, eq, value = arg.partition("=")
        name = SHORT.get(name, name)
        if name in HYDRA_ONLY:
            raise UserError(f"{name}: not taken by ftc: {HYDRA_ONLY[name]}")
        if name in ("--help", "--version", "--resolve", "--multirun", "--run", "--hydra-help") and not eq:
            flags[name] = True
        elif name in ("--cfg", "--package", "--shell-completion"):
            if not eq and i < len(argv):
                value, i = argv[i], i + 1
            if not value:
                raise UserError(f"{name}: needs a value; see ftc --help")
            flags[name] = value
        elif name == "--info":
            from ftc.compiler.inspection import INFO_KINDS  # --info only: compiling does without it

            if not eq and i < len(argv) and argv[i] in INFO_KINDS:
                value, i = argv[i], i + 1
            flags[name] = value or "all"
        else:
            raise UserError(f"unknown option {arg}; see ftc --help")
    return flags, overrides


def run(argv: Sequence[str]) -> int:
    argv = list(argv)
    if not argv or argv[0] == "help":
        print(usage())
        return 0
    if argv[0] in COMMANDS:
        args = root_option(argv[1:]) if argv[0] in RUN_COMMANDS else argv[1:]
        return COMMANDS[argv[0]](args)
    flags, overrides = _parse_flags(argv)
    if flags.get("--help"):
        print(usage())
        return 0
    if flags.get("--hydra-help"):
        print(hydra_help())
        return 0
    if flags.get("--version"):
        print(version())
        return 0
    if "--shell-completion" in flags:
        from ftc.compiler.completion import completion_command

        return completion_command(str(flags["--shell-completion"]), COMMANDS)
    if "--info" in flags:
        from ftc.compiler.inspection import info

        print(info(str(flags["--info"]), overrides))
        return 0
    if "--cfg" in flags:
        from ftc.compiler.inspection import show_config

        print(show_config(str(flags["--cfg"]), overrides, bool(flags.get("--resolve")), flags.get("--package")), end="")
        return 0
    for flag in ("--resolve", "--package"):
        if flag in flags:
            raise UserError(f"{flag}: goes with --cfg job|hydra|all; see ftc --help")
    # Start-up (imports, the pydantic schema, Hydra's compose) makes objects that live until exit and few cycles,
    # yet the cyclic collector scans them about 150 times, ~40 ms of a dry run: it is off until the plan is
    # compiled (compile_and_run turns it on again before anything long-running) and on again whatever happens.
    gc.disable()
    try:
        from ftc.compiler.driver import compile_and_run

        return compile_and_run(overrides, bool(flags.get("--multirun")))
    finally:
        gc.enable()


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
    if argv is None:  # the program's own exit (tests pass argv and go on): the interpreter's last full collection
        gc.freeze()  # then skips what the imports, the schema and the compose left (~30 ms of a ~0.4 s dry run)
    sys.exit(code)
