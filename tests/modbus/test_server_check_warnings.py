"""`edge check` warns, at the line of the site file, about a served point whose configured range
cannot fit its register (the server answers exception 0x04 for it while it does not fit), and
still accepts the site: a warning is a decision to make, not a refusal."""

from __future__ import annotations

from pathlib import Path

from tests.modbus.test_server_unfit_values import MAP, site
from tests.support.cli import edge_cli
from tests.support.site import site_file


def test_edge_check_prints_the_range_warnings_at_their_lines(tmp_path: Path) -> None:
    path = site_file(tmp_path, site(MAP))
    done = edge_cli("check", "-c", str(path))
    assert done.returncode == 0, done.stderr
    warned = [line for line in done.stderr.splitlines() if ": warning: " in line]
    assert len(warned) == 2, done.stderr
    text = path.read_text().splitlines()
    for line, (index, point) in zip(warned, ((1, "dev1.power"), (4, "dev1.temp")), strict=True):
        where, key = line.split(": ")[:2]
        assert key == f"modbus_server.points[{index}]" and point in line, line
        file, _, number = where.rpartition(":")
        assert file == str(path) and f"point: {point}" in text[int(number) - 1] + text[int(number)], line

    # a map whose points all fit: nothing to say
    quiet = edge_cli("check", "-c", str(site_file(tmp_path, site([MAP[0], MAP[2]]), "fits.yaml")))
    assert quiet.returncode == 0 and ": warning: " not in quiet.stderr, quiet.stderr
