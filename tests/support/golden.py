"""Golden cases as data, checked by one set of rules for every case folder.

- `expected.err`: every problem the site file has, one per line, as `edge check` prints them
  (the file's path shortened to `site.yaml`). The counts must match and each line must equal a
  reported problem; a line ending in `…` matches a problem by prefix.
- `expected.json`: the result, compared as JSON. A missing file fails the test: a golden test that
  wrote its own expectation could not fail. `UPDATE_GOLDEN=1` (re)writes it from the current code,
  to review in the diff before committing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from edge.config import ConfigError, load_site


def site_problems(case: Path) -> list[str]:
    """The located problems `load_site` reports for `case/site.yaml` (the file as `site.yaml`)."""
    with pytest.raises(ConfigError) as info:
        load_site(case / "site.yaml")
    return [str(p).replace(str(case / "site.yaml"), "site.yaml") for p in info.value.problems]


def assert_problems(case: Path) -> None:
    """`case/site.yaml` is refused with exactly the problems in `case/expected.err`."""
    expected = [line for line in (case / "expected.err").read_text(encoding="utf-8").splitlines() if line]
    actual = site_problems(case)
    assert len(actual) == len(expected), "\n".join(actual)
    for want in expected:
        if want.endswith("…"):
            assert any(a.startswith(want[:-1]) for a in actual), (want, actual)
        else:
            assert want in actual, (want, actual)
    for line in actual:  # every problem is located: file and line
        assert line.startswith("site.yaml:"), line
        assert line.split(":")[1].isdigit(), f"no line number in {line!r}"


def assert_json(expected_file: Path, got: Any) -> None:
    """`got` equals the JSON in `expected_file`; a missing file fails unless UPDATE_GOLDEN=1."""
    if os.environ.get("UPDATE_GOLDEN"):
        expected_file.write_text(json.dumps(got, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if not expected_file.exists():
        pytest.fail(
            f"{expected_file} is missing: run with UPDATE_GOLDEN=1 to write it from the current code, "
            "then review it before committing"
        )
    assert got == json.loads(expected_file.read_text(encoding="utf-8"))
