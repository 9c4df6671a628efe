"""benchmarks.rerun: every model-dependent result records a command it can rerun; current steps are skipped."""

from __future__ import annotations

import json
import sys

import pytest

from benchmarks import rerun


@pytest.mark.parametrize("step", rerun.STEPS)
def test_every_step_records_a_rerunnable_command(step):
    argv = rerun.to_argv(rerun.recorded_command(step))
    assert argv[0] == sys.executable and argv[1] == "-m" and argv[2].startswith("benchmarks.")
    if argv[2] in rerun.PRECISION:
        assert argv.count("--precision") == 1


def test_precision_is_added_only_where_missing():
    assert rerun.to_argv("python -m benchmarks.quality --per_group 2")[-2:] == ["--precision", "fp32"]
    kept = rerun.to_argv("python -m benchmarks.quality --precision bf16")
    assert kept[-2:] == ["--precision", "bf16"] and kept.count("--precision") == 1
    assert "--precision" not in rerun.to_argv("python -m benchmarks.passthrough --per_group 40")
    with pytest.raises(ValueError):
        rerun.to_argv("bash -c true")


def test_current_steps_are_skipped(tmp_path, capsys):
    sha = rerun.model_sha256()
    state = tmp_path / "rerun.json"
    state.write_text(json.dumps({"quality.json": {"model_sha256": sha}, "passthrough.json": {"model_sha256": "old"}}))
    assert rerun.main(["--dry_run", "--state", str(state), "--only", "quality.json", "passthrough.json"]) == 0
    lines = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines())
    assert lines["quality.json"] == "current" and lines["passthrough.json"] == "rerun"
    assert lines["speed.json"] == "not selected"
    with pytest.raises(SystemExit):
        rerun.main(["--dry_run", "--only", "nonexistent.json"])
