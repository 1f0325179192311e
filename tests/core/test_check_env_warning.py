"""`edge check` says when a secret's environment variable is not set where it runs: the check
passes (the service's own environment may set it), but a gateway started without it does not
start, and the check used to say only "ok"."""

from __future__ import annotations

import os
from pathlib import Path

from tests.support.cli import edge_cli
from tests.support.site import site_file

SITE = {
    "upstream": [
        {
            "id": "central",
            "type": "http",
            "url": "http://127.0.0.1:9/ingest",
            "token_env": "EDGE_TEST_CENTRAL_TOKEN",
        }
    ],
    "devices": [{"id": "m", "driver": "sim", "points": [{"name": "v", "interval": "1h"}]}],
}


def test_an_unset_token_variable_is_a_located_warning_not_a_refusal(tmp_path: Path) -> None:
    config = site_file(tmp_path, SITE)
    env = {k: v for k, v in os.environ.items() if k != "EDGE_TEST_CENTRAL_TOKEN"}
    unset = edge_cli("check", "-c", str(config), env=env)
    assert unset.returncode == 0, unset.stderr
    assert (
        "upstream[0].token_env: environment variable EDGE_TEST_CENTRAL_TOKEN is not set here" in unset.stderr
    )
    set_ = edge_cli("check", "-c", str(config), env={**env, "EDGE_TEST_CENTRAL_TOKEN": "t0ken"})
    assert set_.returncode == 0 and "EDGE_TEST_CENTRAL_TOKEN" not in set_.stderr, set_.stderr
