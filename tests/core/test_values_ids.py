"""An id or an event kind carrying a control character never gets past `edge check`: a trailing
newline (`"dev-2\\n"`) is refused like any other bad character of an id, and an event kind with
a control character (a sim event's, a rule's `event: {kind: ...}`) is a located error. Kinds
with spaces, punctuation or Chinese characters stay accepted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.core.test_check_limits import _line, _refused
from tests.support.cli import edge_cli
from tests.support.site import site_file

YamlPath = tuple[str | int, ...]


def _at(config: Path, *path: str | int) -> str:
    key = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")
    return f"{config}:{_line(config, path)}: {key}: "


def test_edge_check_refuses_ids_with_a_trailing_newline_and_kinds_with_control_characters(
    tmp_path: Path,
) -> None:
    doc: dict[str, Any] = {
        "site": {"id": "gw-6\n"},
        "devices": [
            {
                "id": "dev-2\n",
                "driver": "sim",
                "points": [{"name": "x\n", "signal": "constant", "value": 1.5}],
                "events": [
                    {"kind": "note\ninjected", "every": "1h"},
                    {"kind": "tab\tkind", "every": "1h"},
                    {"kind": "", "every": "1h"},
                ],
            }
        ],
        "upstream": [{"id": "recv\n", "type": "http", "url": "http://127.0.0.1:9/ingest"}],
    }
    config = site_file(tmp_path, doc)
    err = _refused(edge_cli("check", "-c", str(config)), 7)
    assert f"{_at(config, 'site', 'id')}invalid site id 'gw-6\\n'" in err, err
    assert f"{_at(config, 'devices', 0, 'id')}invalid device id 'dev-2\\n'" in err, err
    assert f"{_at(config, 'devices', 0, 'points', 0, 'name')}invalid point name 'x\\n'" in err, err
    assert f"{_at(config, 'upstream', 0, 'id')}invalid upstream id 'recv\\n'" in err, err
    kind = _at(config, "devices", 0, "events", 0, "kind")
    assert f"{kind}event kind 'note\\ninjected' holds the control character '\\n'" in err, err
    kind = _at(config, "devices", 0, "events", 1, "kind")
    assert f"{kind}event kind 'tab\\tkind' holds the control character '\\t'" in err, err
    assert f"{_at(config, 'devices', 0, 'events', 2, 'kind')}an event kind is a non-empty text" in err, err


PACK = {
    "rules": [
        {
            "id": "injector",
            "when": "m.p",
            "then": [{"event": {"kind": "note\ninjected", "message": "hello"}}],
        },
        {"id": "r-2\n", "when": "m.p", "then": [{"alert": "hi"}]},
        {"id": "trigger", "when": ["m.p\n"], "then": [{"alert": "hi"}]},
        {"id": "on-event", "when": [{"event": "door\n"}], "then": [{"alert": "hi"}]},
        {"id": "dead-man", "when": [{"no_data": "m.p\n", "for": "5m"}], "then": [{"alert": "hi"}]},
        {"id": "setter", "when": "m.p", "then": [{"set": {"point": "virt.x\n", "value": 1}}]},
        {"id": "hook", "when": "m.p", "then": [{"webhook": "http://127.0.0.1:9/hook\n"}]},
    ]
}


def test_edge_check_refuses_rule_ids_points_kinds_and_urls_with_control_characters(tmp_path: Path) -> None:
    pack = tmp_path / "pack.yaml"
    pack.write_text(yaml.safe_dump(PACK, allow_unicode=True, sort_keys=False), encoding="utf-8")
    doc = {
        "devices": [{"id": "m", "driver": "sim", "points": [{"name": "p", "interval": "1h"}]}],
        "rules": {"packs": [str(pack)]},
    }
    config = site_file(tmp_path, doc)
    err = _refused(edge_cli("check", "-c", str(config)), 7)
    assert "rule injector:then[0].event.kind:" in err, err
    assert "event kind 'note\\ninjected' holds the control character '\\n'" in err, err
    assert "rule r-2\\n:id: line 1, column 1: rule id 'r-2\\n' must be 1-64 characters" in err, err
    assert "'m.p\\n' is not a point or pattern" in err, err
    assert "'door\\n' is not an event kind" in err, err
    assert "'virt.x\\n' is not a point id" in err, err
    assert "webhook url must start with http:// or https://" in err, err
    assert len(err.splitlines()) == 8, err  # one line per problem, and the count


def test_edge_check_keeps_kinds_with_spaces_punctuation_and_chinese(tmp_path: Path) -> None:
    pack = tmp_path / "pack.yaml"
    rule = {"id": "note", "when": "m.p", "then": [{"event": {"kind": "门 opened, x=y", "message": "hi"}}]}
    pack.write_text(yaml.safe_dump({"rules": [rule]}, allow_unicode=True), encoding="utf-8")
    doc = {
        "devices": [
            {
                "id": "m",
                "driver": "sim",
                "points": [{"name": "p", "interval": "1h"}],
                "events": [{"kind": "ev kind,x=y", "every": "1h"}, {"kind": "中文事件", "every": "1h"}],
            }
        ],
        "rules": {"packs": [str(pack)]},
    }
    config = site_file(tmp_path, doc)
    proc = edge_cli("check", "-c", str(config))
    assert proc.returncode == 0, proc.stdout + proc.stderr
