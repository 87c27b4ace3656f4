"""docs/reliability.md is the index of the reliability cases: every test file its tables name exists and
holds reliability-marked tests, and every file with such tests is named there, so `make test-reliability`
and the table list the same cases."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "reliability.md"


def files_named_in_the_tables(doc_text: str) -> set[Path]:
    named = set()
    for line in doc_text.splitlines():
        if not line.startswith("| "):
            continue
        last_cell = line.rstrip(" |").rsplit("|", 1)[-1]
        folder = None
        for ref in re.findall(r"(?:tests/[\w/]*)?test_\w+\.py", last_cell):  # "tests/models/test_cvr.py, test_unimvt.py"
            path = Path(ref) if "/" in ref else folder / ref
            folder = path.parent
            named.add(path)
    return named


def files_with_marked_tests() -> set[Path]:
    marked = set()
    for path in (REPO / "tests").rglob("test_*.py"):
        rel = path.relative_to(REPO)
        if rel.name == "test_index.py":
            continue
        if rel.parts[:2] == ("tests", "reliability"):
            marked.add(rel)
        elif "@pytest.mark.reliability" in path.read_text(encoding="utf-8"):
            marked.add(rel)
    return marked


def test_the_table_and_the_marked_tests_name_the_same_files():
    named = files_named_in_the_tables(DOC.read_text(encoding="utf-8"))
    assert len(named) >= 10, named
    missing = sorted(str(p) for p in named if not (REPO / p).is_file())
    assert not missing, f"docs/reliability.md names test files that do not exist: {missing}"
    marked = files_with_marked_tests()
    assert not sorted(map(str, named - marked)), \
        f"named in docs/reliability.md but without a @pytest.mark.reliability test: {sorted(map(str, named - marked))}"
    assert not sorted(map(str, marked - named)), \
        f"reliability tests not listed in docs/reliability.md: {sorted(map(str, marked - named))}"


@pytest.mark.parametrize("line, expected", [
    ("| a | b | tests/models/test_cvr.py, test_unimvt.py, test_hmum.py |",
     {"tests/models/test_cvr.py", "tests/models/test_unimvt.py", "tests/models/test_hmum.py"}),
    ("| a | b | tests/lib/test_store.py |", {"tests/lib/test_store.py"}),
    ("| case | what happens | test |", set()),
    ("| 30 days | ... | bench/backfill.py; its comparison: tests/reliability/test_backfill_compare.py |",
     {"tests/reliability/test_backfill_compare.py"}),
])
def test_a_table_row_names_its_files(line, expected):
    assert {str(p) for p in files_named_in_the_tables(line)} == expected
