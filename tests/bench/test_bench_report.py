"""reports/bench.md's summary: every target of issue 20 beside its section's last figures, with the
verdict worked out from the ratio (never adjusted), and a report rebuilt from its JSON files reads the
same every time."""
from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # bench/ is a folder of the checkout, not an installed package
    sys.path.insert(0, str(REPO))
from bench.run import gpu, summary  # noqa: E402
from bench.run.cli import main  # noqa: E402


def _rows(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| target |")]


def test_a_target_is_met_on_its_side_of_the_line_and_a_section_not_run_says_so(tmp_path):
    results = [{"exposures": 1_000_000, "ratio_wall": 3.01, "ratio_cpu": 4.0},
               {"exposures": 10_000_000, "ratio_wall": 2.99, "ratio_cpu": 5.5}]
    (tmp_path / "bench-simulate.json").write_text(json.dumps(
        {"info": {"started": "2026-12-01 10:00:00", "machine": {"gpu": "none"}}, "simulate": results}))
    lines = summary.summary(str(tmp_path / "bench.md"))
    text = "\n".join(lines)
    assert "| simulate <= 3x the numpy + pyarrow floor at 1,000,000, cold (wall) | 3.01x (CPU 4.00x) | **not met** " \
           "| simulate, 2026-12-01 |" in lines
    assert "| simulate <= 3x the numpy + pyarrow floor at 10,000,000, cold (wall) | 2.99x (CPU 5.50x) | met " \
           "| simulate, 2026-12-01 |" in lines
    for name in ("features", "dag", "scoring", "training", "gpu"):
        assert f"| {name}: not measured yet | - | - | `--only {name}` |" in lines
    assert "1 of 2 measured targets met" in text


def test_the_committed_report_rebuilds_from_its_json_the_same_and_its_summary_holds_every_section_target(tmp_path):
    for f in (REPO / "reports").glob("bench*.json"):
        shutil.copy(f, tmp_path / f.name)
    out = tmp_path / "bench.md"
    assert main(["--render", "--out", str(out)]) == 0
    first = out.read_text(encoding="utf-8")
    assert main(["--render", "--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == first
    top = first.split(summary.END)[0]
    measured = [r for r in _rows(top) if "not measured" not in r]  # not the GPU row
    # each section's own target table: the same target, figure and verdict as its summary row
    for module in summary.WITH_TARGETS:
        block = first.split(module.BEGIN)[1].split(module.END)[0]
        own = [r for r in _rows(block) if r.endswith((" | met |", " | **not met** |"))]
        if module is gpu and "No GPU measured" in block:  # no target row: the summary says why
            assert re.search(r"\| training and scoring on a GPU .* \| not measured: .* \| gpu, ", top)
            continue
        assert own, module.__name__
        for row in own:
            assert any(r.startswith(row.rsplit(" |", 1)[0]) for r in measured), row
    met = sum(" | met | " in r for r in measured)
    assert re.search(rf"\b{met} of {len(measured)} measured targets met", top)


def test_the_features_warm_up_ends_when_the_jit_compiler_goes_quiet_and_its_cpu_is_read_from_the_session_jvm(spark):
    from bench.run.common import jit_compiler_cpu
    from bench.run.features import JIT_SETTLED_SHARE, jit_settled

    assert JIT_SETTLED_SHARE == 0.10
    assert not jit_settled({"cpu_s": 10.0, "jit_cpu_s": 1.32})  # 13 % of the round in the compiler
    assert jit_settled({"cpu_s": 10.0, "jit_cpu_s": 1.0})
    assert jit_settled({"cpu_s": 9.07, "jit_cpu_s": 0.7})
    assert jit_settled({"cpu_s": 9.07, "jit_cpu_s": None})  # no /proc: one warm-up round, as before
    before = jit_compiler_cpu(spark)
    assert before is not None and before > 0  # a started JVM has compiled its start-up code
    spark.range(200_000).selectExpr("sum(id * 3 % 7)").collect()
    assert jit_compiler_cpu(spark) >= before
