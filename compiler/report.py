"""What ftc prints about plans: the dry-run summary, sweep lines and the model config table."""

from __future__ import annotations

from ftc.compiler.planning.plan import Plan


def _gib(value: float) -> str:
    return f"{value:.1f}"


def _duration(hours: float) -> str:
    if hours >= 1:
        return f"{hours:.1f} h"
    return f"{hours * 60:.0f} min" if hours * 60 >= 1 else f"{max(hours * 3600, 1):.0f} s"


def layout_line(plan: Plan) -> str:
    t = plan.topology
    unit = "CPU worker" if plan.gpu == "cpu" else f"{plan.gpu} GPU"
    return (
        f"{t.nodes} node{'s' * (t.nodes > 1)} x {t.gpus_per_node} {unit}{'s' * (t.gpus_per_node > 1)}, "
        f"TP {t.tensor_parallel}, ZeRO {t.zero_stage}, micro batch {t.micro_batch_size} x "
        f"{t.data_parallel} ranks x {t.gradient_accumulation_steps} accumulation = {plan.job.method.batch_size}"
        f"{', gradient checkpointing' if t.gradient_checkpointing else ''}"
    )


def memory_line(plan: Plan) -> str:
    m = plan.memory
    if m is None:
        return "not estimated"
    items = " + ".join(f"{i.name} {_gib(i.gib)}" for i in m.items if i.gib >= 0.05)
    if plan.gpu == "cpu":
        return f"{items} = {_gib(m.total_gib)} GiB per worker"
    check = (f"; model states {_gib(m.model_states_gib)} GiB >= {_gib(m.deepspeed_gib)} by DeepSpeed's "
             f"{m.deepspeed_estimator}" if m.deepspeed_estimator else "")
    return f"{items} = {_gib(m.total_gib)} GiB per GPU of {_gib(m.capacity_gib)} GiB (headroom {m.headroom:.0%}){check}"


def architecture_line(a) -> str:
    """The architecture the plan used, and where its parameter count came from."""
    heads = f"{a.attention_heads} heads ({a.kv_heads} KV, head_dim {a.head_dim})"
    moe = f", {a.experts} experts ({a.experts_per_token} a token{' + shared' if a.shared_experts else ''})" if a.experts else ""
    vocab = f"vocab {a.vocab_size}{' tied' if a.tie_embeddings else ''}"
    source = a.sources.get("parameters", "the model file")
    return (f"{a.family}: {a.layers} layers, hidden {a.hidden_size}, {heads}{moe}, {vocab}; "
            f"{a.parameters:,} parameters ({source})")


def trains_line(plan: Plan) -> str:
    """What the optimizer updates: the resolved LoRA targets, or every weight."""
    share = plan.trainable_parameters / plan.job.model.architecture.parameters
    count = f"{plan.trainable_parameters:,} trainable parameters ({share:.2%})"
    if not plan.lora_targets:
        return f"all weights: {count}"
    asked = plan.job.method.lora.target_modules
    asked = asked if isinstance(asked, str) else "named"
    return f"LoRA on {', '.join(plan.lora_targets)} ({asked}): {count}"


def _read_as(data) -> str:
    """The rows' format, and the kind they train as when it is another name (sharegpt rows train as chat)."""
    return data.format if data.row_format in ("", data.format) else f"{data.row_format} as {data.format}"


def summary(plan: Plan) -> str:
    job, method, data = plan.job, plan.job.method, plan.dataset
    length = f"max_steps {method.max_steps}" if method.max_steps else f"epochs {method.epochs}"
    hyper = f"{length}, batch {method.batch_size}, lr {method.learning_rate:g}"
    if hasattr(method, "lora") and method.uses_lora:
        hyper += f", adapter_dim {method.lora.adapter_dim}, alpha {method.lora.alpha}"
    rows = ", ".join(f"{n} {split}" for split, n in data.rows.items())
    long_rows = sum(data.long_rows.values())
    lines = [
        f"run        {plan.output_name}",
        f"model      {plan.model_urn}",
        f"arch       {architecture_line(job.model.architecture)}",
        f"method     {method.name} ({method.training_type}/{method.finetuning_type}): {hyper}",
        f"trains     {trains_line(plan)}",
        f"data       {job.data.name} ({_read_as(data)}): {rows} rows"
        + (f", {long_rows} above {plan.max_seq_length} tokens (truncated)" if long_rows else "")
        + (f"; memory sized for sequences of {plan.memory.sequence_length} tokens" if plan.memory else ""),
        f"layout     {layout_line(plan)}",
        f"memory     {memory_line(plan)}",
    ]
    if data.validation_from != "folder":
        lines.insert(4, f"           validation rows split off: {data.validation_from}")
    if plan.estimate is not None and plan.gpu == "cpu":
        lines.append(f"time       not estimated for CPU workers (ftc's time model is for GPUs); --time={plan.time_limit}")
    elif plan.estimate is not None:
        e = plan.estimate
        requeue = f"; outlasts the partition limit: checkpoints and requeues {e.requeues}x" if e.requeues else ""
        lines.append(f"time       ~{_duration(e.hours)} estimated ({e.tokens_per_epoch:,} tokens/epoch); --time={plan.time_limit}{requeue}")
        if e.parts:
            lines.append("           = " + " + ".join(f"{k} {_duration(v / 3600)}" for k, v in e.parts.items() if v >= 0.5 or k == "train"))
    lines += [f"chose      {d}" for d in plan.decisions]
    lines += [f"warning    {w}" for w in plan.warnings]
    lines.append(f"run folder {plan.run_dir}")
    return "\n".join(lines)


def sweep_line(index: int, plan: Plan, overrides: list[str]) -> str:
    t = plan.topology
    memory = f"{plan.memory.total_gib:.1f} GiB" if plan.memory else "-"
    return f"[{index}] {plan.run_id}  {t.nodes}x{t.gpus_per_node} ZeRO {t.zero_stage}  {memory}  {' '.join(overrides) or '(defaults)'}"


def _count(value: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if value >= size:
            return f"{value / size:.1f}{unit}"
    return str(value)


def _option_row(o) -> tuple[str, ...]:
    nodes = f"{o.num_nodes} node{'s' * (o.num_nodes > 1)} x {o.num_gpus} GPU{'s' * (o.num_gpus > 1)}"
    return (o.training_type, o.finetuning_type, nodes, f"TP {o.tensor_parallel_size}", f"max seq {o.max_seq_length}")


def _model_configs(names: list[str]) -> list:
    """(option, validated config) for each model config, or for the ones `names` asks for."""
    import difflib

    from ftc.compiler.config.compose import load_model_config
    from ftc.compiler.config.urn import model_entries
    from ftc.compiler.errors import UserError

    entries = {e.option: e for e in model_entries()}
    for name in names:
        if name not in entries:
            near = difflib.get_close_matches(name, entries, n=1)
            hint = f"; did you mean {near[0]}?" if near else ""
            raise UserError(f"configs: no model config {name!r}{hint} (choose from {', '.join(sorted(entries))})")
    return [(option, load_model_config(option)) for option in (names or entries)]


def configs_by_name(names: list[str] | None = None) -> str:
    """Model configs under the names you type (model=llama8b), each with its URN and training options.

    GPU variants that offer the same options share one block.
    """
    blocks: list[tuple[str, list[tuple[str, list[tuple[str, ...]]]]]] = []
    models = _model_configs(names or [])
    width = max(len(option) for option, _ in models)
    for option, model in models:
        a = model.architecture
        groups: dict[tuple, list[str]] = {}
        for variant, options in model.training_options.items():
            groups.setdefault(tuple(_option_row(o) for o in options), []).append(variant)
        head = (f"{option.ljust(width)}  {model.namespace}/{model.name}@{model.version}  "
                f"({a.family}, {_count(a.parameters)} parameters)")
        blocks.append((head, [(", ".join(v), list(rows)) for rows, v in groups.items()]))
    rows = [r for _, groups in blocks for _, rs in groups for r in rs]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))] if rows else []
    lines = []
    for head, groups in blocks:
        lines.append(head)
        for variants, option_rows in groups:
            lines.append(f"  +{variants.replace(', ', ', +')}")
            lines += ["    " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in option_rows]
        lines.append("")
    lines.append("Pick one with model=NAME, or a GPU variant with model.urn=URN+GPU "
                 "(e.g. model.urn=meta/llama-3.1-8b-instruct@v1.0.0+H100); ftc configs --urns lists every URN.")
    return "\n".join([*lines, *_user_model_lines(), *_site_lines()])


def _user_model_lines() -> list[str]:
    """Model folders under the default cluster's cluster.model_paths, each as model=custom would read it."""
    from ftc.compiler.config.compose import default_cluster
    from ftc.compiler.modelfolder.route import user_models
    from ftc.compiler.runs.terminal import printable as terminal_safe

    cluster = default_cluster()
    if not cluster.user_models:
        return ["", f"Your own models: cluster {cluster.name} does not allow them."]
    lines = ["", "Your own models: model=custom model.path=DIR" + (
        f" (DIR under {', '.join(cluster.model_paths)})" if cluster.model_paths else " (any folder you can read)")]
    for folder, info in user_models(cluster):
        shown = terminal_safe(folder)
        if isinstance(info, str):
            lines.append(f"  {shown}  refused: {terminal_safe(info)}")
        else:
            lines.append(f"  {shown}  local/{info.name}@{info.config_sha256[:12]}  "
                         f"({info.family}, {_count(info.num_parameters)} parameters, {info.dtype})")
    return lines


def _site_lines() -> list[str]:
    """What the site folders replaced or added, below either configs view."""
    from ftc.compiler.config.sites import site_changes

    return [f"site       {line}" for line in site_changes()]


def configs_table() -> str:
    """Model configs as NeMo Customizer's configs endpoint lists them: one row per URN and option."""
    from ftc.compiler.config.compose import load_model_config
    from ftc.compiler.config.urn import model_entries

    header = ("URN", "TRAINING", "FINETUNING", "GPUS", "NODES", "TP", "MAX SEQ")
    rows = []
    for entry in model_entries():
        model = load_model_config(entry.option)
        for variant, options in model.training_options.items():
            for o in options:
                rows.append((model.urn(variant), o.training_type, o.finetuning_type, str(o.num_gpus),
                             str(o.num_nodes), str(o.tensor_parallel_size), str(o.max_seq_length)))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    table = "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows])
    return "\n".join([table, *_site_lines()])
