# The two commands of the README. Both set up .venv first (tools/setup-env; fast when done).
.PHONY: setup quickstart test typecheck test-reliability bench bench-backfill package

setup:
	@bash tools/setup-env

quickstart: setup
	.venv/bin/liftlake quickstart

# The type checker first (every liftlake import must resolve; mypy.ini), then the suite.
test: setup typecheck
	.venv/bin/python -m pytest -q -ra --durations=15 tests

typecheck: setup
	.venv/bin/python -m mypy -p liftlake.lib -p liftlake.models -p liftlake.jobs -p bench.run

# Every bad-input and fault case of docs/reliability.md (a subset of `make test`)
test-reliability: setup
	.venv/bin/python -m pytest -q -ra -m reliability tests

bench: setup
	.venv/bin/python -m bench.run

# 30-day Airflow backfill of liftlake_daily (real scheduler, pool of 2) vs. one-day runs -> reports/backfill.md
bench-backfill: setup
	.venv/bin/python -m bench.backfill

package: setup
	bash tools/package
