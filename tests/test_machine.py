"""The machine record that results, reports and the demo carry."""

from __future__ import annotations

import json

from benchmarks.report import machine_line
from dpe_monai.machine import machine_summary


def test_machine_summary_records_cpu_identity_and_library_versions() -> None:
    m = machine_summary()
    json.dumps(m)  # stored in result JSONs as it is
    for key in ("cpu", "cpu_id", "cpu_caches", "logical_cpus", "torch_threads", "native_bf16", "numpy", "scipy"):
        assert key in m, key
    assert isinstance(m["cpu_caches"], dict)
    assert m["cpu"]


def test_machine_line_names_the_cpu_identity_only_where_recorded() -> None:
    old = {"machine": {"cpu": "AMD EPYC", "logical_cpus": 2, "torch_threads": 2}}
    assert machine_line(old).startswith("AMD EPYC, 2 logical CPUs")
    new = {"machine": {**old["machine"], "cpu_id": "family 25 model 17 stepping 1", "cpu_caches": {"L2": "1024K"}}}
    assert machine_line(new).startswith("AMD EPYC (family 25 model 17 stepping 1; L2 1024K), 2 logical CPUs")
