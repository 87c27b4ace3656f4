"""`liftlake tables` answers from the Delta logs alone and `liftlake models` from the catalog: no Spark JVM,
no torch."""
from __future__ import annotations

import json
import subprocess
import sys

import pyarrow as pa
from deltalake import write_deltalake

PROBE = """
import sys
from liftlake.lib.cli.main import main
code = main(sys.argv[1:])
heavy = sorted(m for m in ("pyspark", "torch", "py4j") if m in sys.modules)
print(json.dumps({"heavy": heavy}), file=sys.stderr)
sys.exit(code)
"""


def test_tables_json_starts_without_spark_or_torch(tmp_path):
    warehouse = tmp_path / "wh"
    rows = pa.table({"exposure_id": ["a", "b", "c"], "cvr": [0.1, 0.2, 0.3],
                     "ds": ["2026-11-19", "2026-11-20", "2026-11-20"]})
    write_deltalake(str(warehouse / "scores" / "cvr"), rows, partition_by=["ds"])
    proc = subprocess.run([sys.executable, "-c", "import json\n" + PROBE, "tables", "--json",
                           "--set", f"warehouse.path={warehouse}"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout.strip().splitlines()[0])
    assert info["name"] == "scores.cvr" and info["rows_per_partition"] == {"2026-11-19": 1, "2026-11-20": 2}
    probe = json.loads(proc.stderr.strip().splitlines()[-1])
    assert probe["heavy"] == [], proc.stderr


def test_models_and_help_start_without_spark_or_torch(tmp_path):
    from liftlake.models.catalog import MODELS

    for args in (["models", "--json"], ["--help"]):
        proc = subprocess.run([sys.executable, "-c", "import json\n" + PROBE, *args],
                              capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stderr.strip().splitlines()[-1])["heavy"] == [], (args, proc.stderr)
        if args[0] == "models":
            rows = [json.loads(line) for line in proc.stdout.splitlines()]
            assert {r["name"]: r["family"] for r in rows} == {n: f for n, (_, f) in MODELS.items()}
