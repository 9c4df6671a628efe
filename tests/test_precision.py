"""The one precision policy: "auto" measures before it picks bf16, and names its evidence."""

from __future__ import annotations

import json

import pytest
import torch

from dpe_monai import precision
from dpe_monai.inference import Enhancer
from dpe_monai.networks import DPENet


def test_explicit_choices_and_errors():
    assert precision.resolve_amp_dtype("fp32", "cpu")[0] is None
    assert precision.resolve_amp_dtype("bf16", "cpu")[0] == torch.bfloat16
    with pytest.raises(ValueError, match="fp16"):
        precision.resolve_amp_dtype("fp16", "cpu")
    with pytest.raises(ValueError, match="unknown precision"):
        precision.resolve_amp_dtype("int8", "cpu")


def test_auto_needs_native_bf16_and_a_measured_speedup(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    dtype, rec = precision.resolve_amp_dtype("auto", "cpu")
    assert dtype is None and rec == {"requested": "auto", "native": False, "chosen": "fp32"}
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(precision, "bf16_speedup", lambda device: 0.1)  # an AVX2 CPU: bf16 emulated, 10x slower
    dtype, rec = precision.resolve_amp_dtype("auto", "cpu")
    assert dtype is None and rec["speedup"] == 0.1 and rec["chosen"] == "fp32"
    monkeypatch.setattr(precision, "bf16_speedup", lambda device: 2.0)
    assert precision.resolve_amp_dtype("auto", "cpu")[0] == torch.bfloat16


def test_auto_keeps_its_measurement_so_runs_on_one_machine_agree(monkeypatch, tmp_path):
    store = tmp_path / "precision.json"
    monkeypatch.setenv("DPE_MONAI_PRECISION_CACHE", str(store))
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(precision, "bf16_speedup", lambda device: 1.25)
    dtype, rec = precision.resolve_amp_dtype("auto", "cpu")
    assert dtype == torch.bfloat16 and rec["speedup_source"] == "measured"
    monkeypatch.setattr(precision, "bf16_speedup", lambda device: 1.15)  # a later timing on a busier machine
    dtype, rec = precision.resolve_amp_dtype("auto", "cpu")
    assert dtype == torch.bfloat16 and rec["speedup"] == 1.25 and rec["speedup_source"] == str(store)
    assert json.loads(store.read_text()) == {precision.machine_key("cpu"): 1.25}
    store.write_text("not json")  # a damaged store is measured over and rewritten
    dtype, rec = precision.resolve_amp_dtype("auto", "cpu")
    assert dtype is None and rec["speedup_source"] == "measured" and json.loads(store.read_text())
    monkeypatch.setenv("DPE_MONAI_PRECISION_CACHE", "")  # empty: measure every time
    monkeypatch.setattr(precision, "bf16_speedup", lambda device: 2.0)
    assert precision.resolve_amp_dtype("auto", "cpu")[1]["speedup_source"] == "measured"


def test_speedup_is_measured():
    s = precision.bf16_speedup("cpu", size=32, channels=8, repeats=1)
    assert s > 0


def test_enhancer_and_trainer_share_the_policy(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(precision, "bf16_speedup", lambda device: 0.1)
    e = Enhancer(DPENet(channels=(8, 12, 16)), device="cpu", precision="auto")
    assert e.precision == "fp32" and e.precision_check["policy"]["speedup"] == 0.1
    from dpe_monai.engines.utils import resolve_amp_dtype

    assert resolve_amp_dtype("auto", "cpu") is None
