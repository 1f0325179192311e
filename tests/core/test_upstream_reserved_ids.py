"""An upstream sink's id is the name of its journal cursor, and so is a pull consumer's: one that
equals a component's reserved cursor (the KPI fold's `kpi`) would read and move that component's
position. `edge check` refuses such an id, located at its line, and so does every command that
loads the site; any other id is accepted."""

from __future__ import annotations

from pathlib import Path

from edge.yamlpos import format_path
from tests.core.test_check_limits import _line, _refused, _secret
from tests.support.cli import edge_cli
from tests.support.site import site_file


def upstream(sid: str) -> dict[str, object]:
    return {"id": sid, "type": "http", "url": "http://127.0.0.1:9/ingest"}


def test_edge_check_refuses_an_upstream_or_consumer_id_that_names_a_component_cursor(tmp_path: Path) -> None:
    token = _secret(tmp_path / "kpi.token")
    doc = {
        "upstream": [upstream("central"), upstream("kpi")],
        "consumers": [{"id": "kpi", "token_file": str(token)}],
    }
    config = site_file(tmp_path, doc)
    err = _refused(edge_cli("check", "-c", str(config)), 2)
    for path, label, holder in (
        (("upstream", 1, "id"), "upstream id", "an upstream sink"),
        (("consumers", 0, "id"), "consumer id", "a pull consumer"),
    ):
        line = _line(config, path)
        key = format_path(path)
        assert (
            f"{config}:{line}: {key}: {label} 'kpi' is the name of the KPI fold's journal cursor, "
            f"which {holder} under that id would read and move as its own; choose another id"
        ) in err, err

    # another id for each: accepted
    doc = {
        "upstream": [upstream("central"), upstream("kpi-central")],
        "consumers": [{"id": "kpi-platform", "token_file": str(token)}],
    }
    ok = edge_cli("check", "-c", str(site_file(tmp_path, doc)))
    assert ok.returncode == 0, ok.stderr
