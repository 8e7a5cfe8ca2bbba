"""Weights & Biases beside TensorBoard and MLflow: files in the run folder, no network needed.

transformers' integrations do the logging; ftc points each at the run folder first (tensorboard/,
mlruns/ as MLflow's file store, wandb/). W&B runs offline unless the site's cluster.env says
otherwise (WANDB_MODE=online), since compute nodes rarely reach the internet;
`wandb sync RUN_DIR/wandb/offline-run-*` uploads later.
The W&B run is started here, before the trainer's callback, so it carries the ftc run id and the
whole plan as its config, and a requeued job continues the same W&B run.
"""

from __future__ import annotations

import os
from pathlib import Path

from ftc.compiler.planning.plan import Plan
from ftc.runtime import distributed


def wandb_env(plan: Plan) -> None:
    """Settings for W&B; set before the trainer's arguments are built. A site's own values win."""
    run_dir = Path(plan.run_dir)
    defaults = {
        "WANDB_MODE": "offline",
        "WANDB_DIR": str(run_dir),
        "WANDB_PROJECT": f"ftc-{plan.job.namespace}",
        "WANDB_NAME": plan.output_name,
        "WANDB_RUN_ID": plan.run_id,
        "WANDB_RESUME": "allow",
        "WANDB_CONSOLE": "off",  # ftc's console already splits terminal and log file
        "WANDB_SILENT": "true",
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)


def prepare(plan: Plan) -> None:
    """Before the trainer's arguments are built (transformers reads these at setup)."""
    wanted = plan.job.training.report_to
    if "wandb" in wanted:
        wandb_env(plan)
    if "mlflow" in wanted:
        # MLflow 3 refuses its file store unless asked; a folder in the run folder suits a shared file
        # system better than the SQLite database it suggests (file locking over NFS).
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")


def start(plan: Plan, report_to: list[str]) -> None:
    """Rank 0: open the W&B run with the plan as config (transformers' callback then adds the trainer arguments)."""
    if "wandb" not in report_to or not distributed.is_main():
        return
    import wandb

    if wandb.run is None:
        wandb.init(
            project=os.environ["WANDB_PROJECT"],
            id=os.environ["WANDB_RUN_ID"],
            name=os.environ["WANDB_NAME"],
            dir=os.environ["WANDB_DIR"],
            resume=os.environ["WANDB_RESUME"],
            config={"ftc_run_id": plan.run_id, "ftc_output_name": plan.output_name,
                    "ftc_plan": plan.model_dump(mode="json")},
        )


def finish(report_to: list[str]) -> None:
    """Close the W&B run (its offline file is complete only then)."""
    if "wandb" in report_to and distributed.is_main():
        import wandb

        if wandb.run is not None:
            wandb.finish()
