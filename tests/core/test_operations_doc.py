"""docs/operations.md keeps up with what it documents: every shipped alert rule has its row in the
alert table (expression, for, severity as the rules file says), and every check `edge doctor`
runs has its row in the doctor table."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from edge.doctor import diagnose, service_user
from tests.support.cli import ROOT
from tests.support.site import site_file

DOC = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
RULES = ROOT / "deploy" / "prometheus" / "community-edge.rules.yml"


def test_every_shipped_alert_has_its_row() -> None:
    rules = [r for g in yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"] for r in g["rules"]]
    for rule in rules:
        expr = " ".join(str(rule["expr"]).split())
        row = f"| `{rule['alert']}` | `{expr}` | {rule.get('for', '—')} | {rule['labels']['severity']} |"
        assert row in DOC, row


def test_every_doctor_check_has_its_row(tmp_path: Path) -> None:
    config = site_file(tmp_path, {"devices": []})
    checks = {f.check for f in diagnose(str(config), service_user(None))}
    assert "data" in checks
    rows = set(re.findall(r"^\| (\w+) \|", DOC, flags=re.MULTILINE))
    assert checks <= rows, checks - rows
