# The two commands of the README. Both set up .venv first (tools/setup-env; fast when done).
.PHONY: setup quickstart test bench package

setup:
	@bash tools/setup-env

quickstart: setup
	.venv/bin/liftlake quickstart

test: setup
	.venv/bin/python -m pytest -q -ra tests

bench: setup
	.venv/bin/python -m bench.run

package: setup
	bash tools/package
