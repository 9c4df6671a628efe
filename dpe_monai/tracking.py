"""MLflow run logging for workflows that are not Ignite engines (file enhancement, benchmarks, the demo)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["default_tracking_uri", "epoch_means", "log_run", "reopen_run", "run_histories"]


def default_tracking_uri(output_dir: str | os.PathLike) -> str:
    """``sqlite:///<abs output_dir>/mlruns.db`` unless ``MLFLOW_TRACKING_URI`` is set (e.g. to a server URI)."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    from monai.utils import path_to_sqlite_uri

    return path_to_sqlite_uri(str(Path(output_dir).resolve() / "mlruns.db"))


def log_run(
    tracking_uri: str,
    experiment_name: str,
    run_name: str,
    params: Mapping[str, Any] | None = None,
    metrics: Mapping[str, float] | None = None,
    artifacts: Sequence[str | os.PathLike] = (),
    tags: Mapping[str, str] | None = None,
) -> str:
    """Create one finished MLflow run with params, metrics and artifacts; returns its run id.

    Artifacts stored next to a SQLite store go to ``<db folder>/mlruns`` (as MONAI's ``MLFlowHandler`` does).
    """
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment_name)
    if exp is None:
        location = None
        if tracking_uri.startswith("sqlite:"):
            db_path = Path(tracking_uri.split("sqlite:///", 1)[-1])
            location = (db_path.parent / "mlruns").resolve().as_uri()
        exp_id = client.create_experiment(experiment_name, artifact_location=location)
    else:
        exp_id = exp.experiment_id
    run = client.create_run(exp_id, run_name=run_name, tags=dict(tags or {}))
    rid = run.info.run_id
    for k, v in (params or {}).items():
        client.log_param(rid, k, str(v)[:6000])
    for k, v in (metrics or {}).items():
        client.log_metric(rid, k, float(v))
    for path in artifacts:
        p = Path(path)
        if p.is_dir():
            client.log_artifacts(rid, str(p), artifact_path=p.name)
        elif p.is_file():
            client.log_artifact(rid, str(p))
    client.set_terminated(rid)
    return rid


def reopen_run(tracking_uri: str, experiment_name: str, run_name: str) -> str | None:
    """Set the newest *finished* run called ``run_name`` back to running, so that MONAI's ``MLFlowHandler`` (which
    continues an unfinished run of its name and otherwise creates a new one) logs a resumed training that had
    already finished, e.g. extended with a larger ``max_epochs``, into its own run. Returns the run id, or None
    when there is nothing to reopen (no store yet, no such run, or one of that name still open).
    """
    if tracking_uri.startswith("sqlite:") and not Path(tracking_uri.split("sqlite:///", 1)[-1]).is_file():
        return None  # no store yet: nothing was logged
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment_name)
    if exp is None:
        return None
    runs = [r for r in client.search_runs([exp.experiment_id]) if r.info.run_name == run_name]
    if not runs or any(r.info.status != "FINISHED" for r in runs):
        return None
    newest = max(runs, key=lambda r: r.info.start_time or 0)
    client.update_run(newest.info.run_id, status="RUNNING")
    return newest.info.run_id


def run_histories(tracking_uri: str, prefix: str = "") -> list[dict[str, Any]]:
    """Every run whose name starts with ``prefix`` in a store: ``{"run_name", "params", "final_metrics",
    "history": {metric: [(step, value), ...]}}`` (steps ascending), experiment by experiment, oldest run first."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    out = []
    for exp in client.search_experiments():
        for run in client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"]):
            name = run.info.run_name or ""
            if not name.startswith(prefix):
                continue
            history = {
                key: sorted((int(m.step), float(m.value)) for m in client.get_metric_history(run.info.run_id, key))
                for key in run.data.metrics
            }
            out.append(
                {"run_name": name, "params": run.data.params, "final_metrics": run.data.metrics, "history": history}
            )
    return out


def epoch_means(history: Mapping[str, Sequence[tuple[int, float]]], epoch_length: int) -> dict[str, list[float]]:
    """Per-epoch means of iteration-logged metrics (steps 1.. as Ignite counts them), NaN points left out."""
    import math

    out: dict[str, list[float]] = {}
    for key, points in history.items():
        sums: dict[int, list[float]] = {}
        for step, value in points:
            if math.isfinite(value):
                sums.setdefault((int(step) - 1) // max(epoch_length, 1), []).append(value)
        out[key] = [sum(v) / len(v) for _, v in sorted(sums.items())]
    return out
