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
    sha = rerun.shipped_sha256()
    state = tmp_path / "rerun.json"
    state.write_text(json.dumps({"quality.json": {"shipped_sha256": sha}, "passthrough.json": {"shipped_sha256": "x"}}))
    assert rerun.main(["--dry_run", "--state", str(state), "--only", "quality.json", "passthrough.json"]) == 0
    lines = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines())
    assert lines["quality.json"] == "current" and lines["passthrough.json"] == "rerun"
    assert lines["speed.json"] == "not selected"
    with pytest.raises(SystemExit):
        rerun.main(["--dry_run", "--only", "nonexistent.json"])


def test_a_step_that_reads_another_reruns_with_it(tmp_path, capsys):
    sha = rerun.shipped_sha256()
    state = tmp_path / "rerun.json"
    current = {s: {"shipped_sha256": sha} for s in rerun.STEPS}
    state.write_text(json.dumps(dict(current, **{"downstream.json:tumour": {"shipped_sha256": "x"}})))
    assert rerun.main(["--dry_run", "--state", str(state)]) == 0
    lines = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines())
    assert lines["downstream.json:tumour"] == "rerun" and lines["passthrough_tumour_gradprom.json"] == "rerun"
    assert lines["passthrough.json"] == "current"


def test_a_changed_network_option_makes_results_stale(tmp_path):
    """Same weights, another ``network_def`` option (a release that only changes, e.g., the NLM strength): a new key."""
    config = json.loads(rerun.INFERENCE.read_text())
    changed = dict(config, network_def={**config["network_def"], "nlm_h_factor": 0.5})
    paths = [tmp_path / "same.json", tmp_path / "changed.json"]
    paths[0].write_text(json.dumps(config, indent=2))  # formatting alone does not count
    paths[1].write_text(json.dumps(changed))
    meta = json.loads((rerun.INFERENCE.parent / "metadata.json").read_text())
    (tmp_path / "metadata.json").write_text(json.dumps(meta))
    key = rerun.shipped_sha256()
    assert rerun.shipped_sha256(config=paths[0]) == key
    assert rerun.shipped_sha256(config=paths[1]) != key
    (tmp_path / "metadata.json").write_text(json.dumps({**meta, "version": "99.0.0"}))  # new code, same options
    assert rerun.shipped_sha256(config=paths[0]) != key


def test_report_marks_results_of_another_bundle_version_stale():
    from benchmarks.common import bundle_version
    from benchmarks.report import shipped_sha, stale_results

    dpe = {"checkpoint_sha256": shipped_sha(), "bundle_version": bundle_version()}
    res = {
        "current.json": {"methods": {"dpe": dpe}},
        "old_options.json": {"methods": {"dpe": {**dpe, "bundle_version": "0.0.1"}}},
        "old_weights.json": {"methods": {"dpe": {"checkpoint_sha256": "0123456789ab"}}},
        "downstream.json": {"tasks": {"nuclei": {"methods": {"dpe": dpe}}, "lesions": {"methods": {"dpe": {}}}}},
    }
    assert sorted(stale_results(res)) == ["old_options.json", "old_weights.json"]
