"""Every command that writes a file a person names refuses one of the site's own files, as
`edge backup --out` and `edge privacy export --out` do: `edge audit export --output state.db`
truncated the state DB it was exporting (accounts, tokens, the audit log itself), `edge rules
export --output` and `edge kpi export --output` the journal or keys.db. Real commands on a site
that ran; the file is unchanged after the refusal."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cli import edge_cli
from tests.support.site import running_site, site_file

SITE = {
    "devices": [
        {
            "id": "meter",
            "driver": "sim",
            "points": [{"name": "kw", "signal": "constant", "value": 1.0, "interval": "1h"}],
        }
    ]
}


@pytest.mark.parametrize(
    ("command", "target"),
    [
        (["audit", "export"], "state.db"),
        (["rules", "export"], "edge.db"),
        (["kpi", "export"], "state.db"),
    ],
)
async def test_an_output_that_is_one_of_the_sites_own_files_is_refused(
    tmp_path: Path, command: list[str], target: str
) -> None:
    async with running_site(tmp_path, SITE, web=False) as rt:
        assert rt.state is not None
        from edge import audit

        audit.record(rt.state, "wang", "login", "wang")  # an audit log to export
    config = site_file(tmp_path, SITE)
    before = (tmp_path / target).read_bytes()
    done = edge_cli(*command, "-c", str(config), "--output", str(tmp_path / target))
    assert done.returncode != 0, done.stdout
    assert "writing there would replace it" in done.stderr and "nothing was written" in done.stderr, (
        done.stderr
    )
    assert (tmp_path / target).read_bytes() == before
    ok = edge_cli(*command, "-c", str(config), "--output", str(tmp_path / "out.txt"))
    assert ok.returncode == 0, ok.stderr
