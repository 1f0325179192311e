"""docs/rules.md stays true: its example pack compiles and every function and method is documented."""

from __future__ import annotations

import re
from pathlib import Path

from rules.expr import FUNCTIONS, METHODS
from rules.model import ACTION_KINDS, compile_pack

DOC = (Path(__file__).resolve().parents[2] / "docs" / "rules.md").read_text(encoding="utf-8")


def test_example_pack_in_the_docs_compiles() -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", DOC, flags=re.S)
    packs = [b for b in blocks if b.startswith("rules:\n  - id:")]
    assert packs, "docs/rules.md lost its example rule"
    for pack in packs:
        assert compile_pack(pack, "docs/rules.md")


def test_every_function_method_and_action_is_documented() -> None:
    for fn in FUNCTIONS:
        assert re.search(rf"`{fn}\(|\b{fn}\b", DOC), f"function {fn}() is not in docs/rules.md"
    for m in METHODS:
        assert re.search(rf"\b{m}\b", DOC), f"method {m} is not in docs/rules.md"
    for a in ACTION_KINDS:
        assert f"`{a}:" in DOC, f"action {a} is not in docs/rules.md"
