"""The verdict rule shared by the benchmark report and the demo: the best simple method, the oracle, the gap closed."""

from __future__ import annotations

import math

from dpe_monai.evaluators.verdict import best_of, gap_closed, verdict_table


def _summary(**means: tuple[float, float]) -> dict:
    """``method=(psnr, delta_e)`` -> a summary with one group and the pooled/average columns."""
    out = {}
    for method, (psnr, de) in means.items():
        stats = {"psnr": {"mean": psnr, "n": 5}, "delta_e": {"mean": de, "n": 5}}
        out[method] = {"radiology": stats, "pooled": stats, "average": {"psnr": psnr, "delta_e": de}}
    return out


def test_the_model_is_compared_with_the_best_simple_method_not_the_first():
    s = _summary(clahe=(15.0, 9.0), stretch_nlm=(30.0, 2.0), dpe=(32.0, 1.5), oracle=(34.0, 1.0))
    assert best_of(s, ["clahe", "stretch_nlm"], "pooled", "psnr") == "stretch_nlm"
    g = gap_closed(s, "pooled", "psnr", ["clahe", "stretch_nlm"])
    assert g["best"] == "stretch_nlm" and g["wins"] and math.isclose(g["fraction"], 0.5)
    g = gap_closed(s, "average", "delta_e", ["clahe", "stretch_nlm"])  # lower is better
    assert g["best"] == "stretch_nlm" and g["wins"] and math.isclose(g["fraction"], 0.5)


def test_a_loss_is_reported_as_a_loss_and_no_room_as_not_applicable():
    s = _summary(stretch_nlm=(30.0, 2.0), dpe=(28.0, 3.0), oracle=(29.0, 2.5))
    g = gap_closed(s, "pooled", "psnr", ["stretch_nlm"])
    assert not g["wins"] and math.isnan(g["fraction"])  # the simple method beats the oracle: no gap to close
    table = verdict_table(s, ["stretch_nlm"], labels={"stretch_nlm": "stretch + NLM"})
    assert "| loses |" in table and "stretch + NLM 30.00" in table and "n/a" in table
    assert gap_closed(_summary(stretch_nlm=(30.0, 2.0)), "pooled", "psnr", ["stretch_nlm"]) is None  # no model
