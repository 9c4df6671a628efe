"""Rerun every benchmark whose numbers depend on the shipped checkpoint, resumably, then the report.

    python -m benchmarks.rerun              # what is not yet current for the shipped model.pt, then RESULTS.md
    python -m benchmarks.rerun --dry_run    # list the steps, with their state
    python -m benchmarks.rerun --only quality.json downstream.json:tumour

A new shipped checkpoint (``bundles/dpe_enhancement/models/model.pt``) or network (``inference.json``'s
``network_def``) makes every result that scored it stale. Each
step reruns the *exact command recorded in its result JSON* (the top-level ``command``, or ``tasks.<task>.command``
of a downstream file), with ``python`` replaced by this interpreter and, for scripts that take it, ``--precision fp32``
added when the recorded command chose none (the shipped rows are fp32; ``auto`` picks bf16 on CPUs that have it
natively, which changes the scan path's numbers slightly). Steps run in order, one at a time (each uses the machine's
cores), logging to ``outputs/rerun/<step>.log``.

``benchmarks/results/rerun.json`` records, per step, the sha256 of the shipped checkpoint and network it ran with
(:func:`shipped_sha256`), when, and how long it took; a step whose record matches the shipped ones is skipped, so a
run killed at the end of a session resumes at its first stale step once the finished ones are committed. Results
that do not depend on the shipped weights (the ablation's own trainings, the BasicUNet baseline, the route census)
are not rerun. The report (``python -m benchmarks.report``) runs at the end; it marks every section whose DPE rows
scored another checkpoint or bundle version as stale, so a partial rerun is labelled as such in ``RESULTS.md``.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MODEL = ROOT / "bundles" / "dpe_enhancement" / "models" / "model.pt"
INFERENCE = ROOT / "bundles" / "dpe_enhancement" / "configs" / "inference.json"
TASKS = ("segmentation", "nuclei", "lesions", "tumour")

#: in order: a later step may read what an earlier one wrote (the tumour fine-tunes feed the last two)
STEPS: tuple[str, ...] = (
    "quality.json",
    "quality_after.json",
    "quality_nogate.json",
    "passthrough.json",
    "colour_conventions.json",
    *(f"downstream.json:{t}" for t in TASKS),
    *(f"downstream_augmented.json:{t}" for t in TASKS),
    "passthrough_tumour_gradprom.json",
    "task_floor.json",
    "speed.json",
)
#: steps that read what another step writes: they rerun whenever it does
READS: dict[str, tuple[str, ...]] = {"passthrough_tumour_gradprom.json": ("downstream.json:tumour",)}
#: scripts that take ``--precision``
PRECISION = ("benchmarks.quality", "benchmarks.downstream")


def shipped_sha256(model: Path = MODEL, config: Path = INFERENCE) -> str:
    """sha256 (hex) of the shipped checkpoint's bytes, of ``inference.json``'s ``network_def`` (canonical JSON) and
    of the bundle version in ``metadata.json`` beside it: new weights, a changed network option (e.g. the NLM
    strength) or a release that changes the network's code under the same options all make every result stale."""
    h = hashlib.sha256(model.read_bytes())
    h.update(json.dumps(json.loads(config.read_text())["network_def"], sort_keys=True).encode())
    metadata = config.parent / "metadata.json"
    if metadata.is_file():
        h.update(str(json.loads(metadata.read_text()).get("version")).encode())
    return h.hexdigest()


def recorded_command(step: str, results: Path = RESULTS) -> str:
    """The command a result JSON records for ``step`` (``file.json`` or ``file.json:task``)."""
    name, _, task = step.partition(":")
    data = json.loads((results / name).read_text())
    entry = data["tasks"][task] if task else data
    if not entry.get("command"):
        raise KeyError(f"{step}: no recorded command")
    return str(entry["command"])


def to_argv(command: str) -> list[str]:
    """``command`` as an argv for this interpreter, with ``--precision fp32`` where the script takes it and none
    was given."""
    argv = shlex.split(command)
    if argv[:2] != ["python", "-m"]:
        raise ValueError(f"not a 'python -m' command: {command!r}")
    argv[0] = sys.executable
    if argv[2] in PRECISION and "--precision" not in argv:
        argv += ["--precision", "fp32"]
    return argv


def load_state(path: Path) -> dict[str, dict]:
    return json.loads(path.read_text()) if path.exists() else {}


def save_state(state: dict[str, dict], path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="*", default=None, help="these steps (default: all), still skipped when current")
    p.add_argument("--force", action="store_true", help="rerun the selected steps even when current")
    p.add_argument("--dry_run", action="store_true")
    p.add_argument("--state", default=str(RESULTS / "rerun.json"))
    p.add_argument("--logs", default=str(ROOT / "outputs" / "rerun"))
    args = p.parse_args(argv)
    unknown = sorted(set(args.only or ()) - set(STEPS))
    if unknown:
        p.error(f"unknown steps {unknown}; steps: {' '.join(STEPS)}")
    state_path, logs = Path(args.state), Path(args.logs)
    sha = shipped_sha256()
    state = load_state(state_path)
    selected = [s for s in STEPS if args.only is None or s in args.only]
    todo = [s for s in selected if args.force or state.get(s, {}).get("shipped_sha256") != sha]
    todo = [s for s in selected if s in todo or any(r in todo for r in READS.get(s, ()))]
    for s in STEPS:
        mark = "rerun" if s in todo else ("current" if s in selected else "not selected")
        print(f"{s:40s} {mark}", flush=True)
    if args.dry_run:
        return 0
    logs.mkdir(parents=True, exist_ok=True)
    for step in todo:
        cmd = to_argv(recorded_command(step))
        print(f"[{datetime.datetime.now():%H:%M:%S}] {step}: {shlex.join(cmd[1:])}", flush=True)
        t0 = time.time()
        with open(logs / f"{step.replace(':', '_')}.log", "w") as log:
            rc = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT).returncode
        if rc != 0:
            print(f"{step}: exit {rc}; see {logs}", flush=True)
            return rc
        state[step] = {
            "shipped_sha256": sha,
            "finished": datetime.datetime.now().isoformat(timespec="seconds"),
            "seconds": round(time.time() - t0, 1),
            "command": shlex.join(["python"] + cmd[1:]),
        }
        save_state(state, state_path)
    stale = [s for s in STEPS if state.get(s, {}).get("shipped_sha256") != sha]
    if stale:
        print(
            f"not yet current for the shipped checkpoint and network: {' '.join(stale)} (RESULTS.md marks them stale)",
            flush=True,
        )
    return subprocess.run([sys.executable, "-m", "benchmarks.report"], cwd=ROOT).returncode


if __name__ == "__main__":
    raise SystemExit(main())
