"""Site files, profiles and rule packs are bounded (1 MiB, 64 levels of nesting): past a limit
they are a located error from `edge check`, a refused SIGHUP reload that the next good file
follows, and a YamlError for every caller of `edge.yamlpos.load` — never a traceback."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest
import yaml

from edge.config import ConfigError, load_profile, load_site_text
from edge.yamlpos import MAX_BYTES, MAX_DEPTH, YamlError, load
from tests.core.test_service import SITE, NotifySocket, _records, _start
from tests.support.cli import edge_cli
from tests.support.procs import stop_process, terminate
from tests.support.site import site_file
from tests.support.waiting import until_sync

DEEP = 5000
HEADER = "site: {id: deep-site}\nx:\n"  # the nesting starts on line 3


def deep_flow(levels: int = DEEP) -> str:
    return "[" * levels + "1" + "]" * levels


def deep_block(levels: int = DEEP) -> str:
    """`- - - … 1`: block sequences nested on one line, each `- ` one level deeper."""
    return "- " * levels + "1"


def _check(path: Path) -> subprocess.CompletedProcess[str]:
    return edge_cli("check", "-c", str(path))


def _refused(proc: subprocess.CompletedProcess[str]) -> str:
    """The output of a refused `edge check`: exit 1, a few located lines, no traceback."""
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out[-2000:]
    assert "Traceback" not in out and "RecursionError" not in out, out[-2000:]
    assert len(out.splitlines()) <= 4, out[-2000:]
    return proc.stderr


@pytest.mark.parametrize(
    "body",
    [
        "  " + deep_flow(),
        "  " + deep_block(),
        "  " + "{a: " * DEEP + "1" + "}" * DEEP,
    ],
    ids=["flow-lists", "block-lists", "flow-mappings"],
)
def test_edge_check_locates_a_site_file_nested_too_deep(tmp_path: Path, body: str) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(HEADER + body + "\n")
    err = _refused(_check(site))
    assert f"{site}:3: nesting deeper than {MAX_DEPTH} levels" in err


def test_edge_check_refuses_a_site_file_over_the_size_cap_naming_both_sizes(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    comment = "# " + "x" * 1021 + "\n"  # 1 KiB lines: a valid file, only too big
    site.write_text("site: {id: big-site}\n" + comment * 2048)
    size = site.stat().st_size
    err = _refused(_check(site))
    assert f"{site}: file too large: {size:,} bytes (2.0MiB)" in err
    assert f"at most {MAX_BYTES:,} bytes (1.0MiB) are accepted" in err


def test_edge_check_locates_a_rule_pack_nested_too_deep(tmp_path: Path) -> None:
    pack = tmp_path / "deep.yaml"
    pack.write_text("rules:\n  - id: deep\n    when: x.y\n    then: " + deep_flow() + "\n")
    site = tmp_path / "site.yaml"
    site.write_text("site: {id: s}\nrules:\n  packs: [deep.yaml]\n")
    err = _refused(_check(site))
    assert f"{pack}:4: nesting deeper than {MAX_DEPTH} levels" in err


def test_a_profile_nested_too_deep_is_a_located_error(tmp_path: Path) -> None:
    (tmp_path / "deep-meter.yaml").write_text("driver: sim\npoints:\n  - " + deep_flow() + "\n")
    with pytest.raises(YamlError, match=rf"deep-meter.yaml:3: nesting deeper than {MAX_DEPTH} levels"):
        load_profile("deep-meter", tmp_path)


def test_load_takes_its_limits_as_parameters() -> None:
    load(deep_flow(MAX_DEPTH), "ok.yaml")  # the limit itself is accepted
    with pytest.raises(YamlError, match=r"^f.yaml:1: nesting deeper than 3 levels"):
        load("a: {b: {c: {d: 1}}}", "f.yaml", max_depth=3)
    load("a: {b: {c: 1}}", "f.yaml", max_depth=3)
    with pytest.raises(YamlError, match=r"^f.yaml: file too large: 21 bytes \(21B\); at most 20 bytes"):
        load("a: '" + "x" * 16 + "'", "f.yaml", max_bytes=20)


def test_aliases_cannot_stack_collections_past_the_depth_limit() -> None:
    # each anchor wraps the previous one 60 levels deeper: the text nests 61, the data 12,000
    lines = ["a0: &a0 " + deep_flow(60)]
    lines += [f"a{i}: &a{i} " + "[" * 60 + f"*a{i - 1}" + "]" * 60 for i in range(1, 200)]
    with pytest.raises(YamlError, match=f"nesting deeper than {MAX_DEPTH} levels"):
        load("\n".join(lines), "aliases.yaml")


def test_merge_keys_chained_through_skipped_anchors_are_refused() -> None:
    # anchors defined under refused (duplicate) keys are never walked, so merging the last one
    # flattens the whole chain at once
    lines = ["x: 1", "b0: &m0 {v: 1}"]
    lines += [f"x: &m{i} {{<<: *m{i - 1}}}" for i in range(1, 3000)]
    lines.append("z: {<<: *m2999}")
    with pytest.raises(YamlError, match="nesting deeper than"):
        load("\n".join(lines), "merge.yaml")


def test_a_collection_used_as_a_key_is_refused_without_constructing_it() -> None:
    # the anchors sit under a repeated (refused) key, so only the key itself could expand them:
    # constructing it would recurse 12,000 levels deep
    lines = ["x: 1", "x:", "  - &a0 " + deep_flow(60)]
    lines += [f"  - &a{i} " + "[" * 60 + f"*a{i - 1}" + "]" * 60 for i in range(1, 200)]
    lines += ["? *a199", ": 2"]
    with pytest.raises(YamlError) as refused:
        load("\n".join(lines), "key.yaml")
    assert [p.message for p in refused.value.problems] == [
        "duplicate key 'x' (first at line 1)",
        "keys must be plain words",
    ]


def test_load_site_text_reports_depth_as_a_config_error() -> None:
    with pytest.raises(ConfigError, match=rf"^site.yaml:3: nesting deeper than {MAX_DEPTH} levels"):
        load_site_text(HEADER + "  " + deep_block() + "\n", "site.yaml")


def test_sighup_refuses_a_deep_then_a_huge_file_and_applies_the_next_good_one(tmp_path: Path) -> None:
    config = site_file(tmp_path, SITE)
    good = yaml.safe_load(config.read_text())
    notify = NotifySocket(tmp_path / "notify.sock")
    proc = _start(config, {"NOTIFY_SOCKET": str(notify.path)})

    def readies() -> int:  # READY=1 at start and again after each reload, refused or not
        return sum("READY=1" in m for m in notify.poll())

    try:
        until_sync(lambda: readies() >= 1, timeout=30, what="READY=1")
        before = config.read_text()
        deep_line = len(before.splitlines()) + 2
        config.write_text(before + "x:\n  " + deep_flow() + "\n")
        proc.send_signal(signal.SIGHUP)
        until_sync(lambda: readies() >= 2, timeout=30, what="READY=1 after the deep file")
        config.write_text("site: {id: huge}\n" + ("# " + "x" * 1021 + "\n") * 2048)
        huge = config.stat().st_size
        proc.send_signal(signal.SIGHUP)
        until_sync(lambda: readies() >= 3, timeout=30, what="READY=1 after the huge file")
        good["devices"].append(
            {
                "id": "bin-1",
                "driver": "sim",
                "points": [{"name": "fill_pct", "signal": "ramp", "interval": "20ms"}],
            }
        )
        config.write_text(yaml.safe_dump(good))
        proc.send_signal(signal.SIGHUP)
        until_sync(
            lambda: any(r[1] == "bin-1.fill_pct" for r in _records(tmp_path / "edge.db")),
            timeout=30,
            what="the device added by the good file reporting",
        )
        out = terminate(proc)
    finally:
        stop_process(proc)
        notify.close()
    assert proc.returncode == 0, out[-3000:]
    assert "Traceback" not in out and "RecursionError" not in out, out[-3000:]
    assert out.count("reload refused: the site file has errors; nothing changed") == 2
    assert f"{config}:{deep_line}: nesting deeper than {MAX_DEPTH} levels" in out
    assert f"{config}: file too large: {huge:,} bytes (2.0MiB)" in out
    assert 'msg="site file reloaded"' in out and "added=bin-1" in out


def test_a_large_document_loads_whole_and_leaves_the_garbage_collector_as_it_was() -> None:
    # from 64 KiB on the collector pauses during the parse and the node graph is freed piecewise
    import gc

    entry = "  - {id: bin-%d, driver: sim, points: [{name: fill_pct, signal: ramp}], tags: *tags}\n"
    text = "tags: &tags [a, b]\ndevices:\n" + "".join(entry % i for i in range(2000))
    assert len(text) > 128 * 1024
    data, pos = load(text, "big.yaml")
    assert data == yaml.safe_load(text)
    assert pos.line_of(("devices", 1999, "points", 0, "name")) == 2002
    assert gc.isenabled()
    with pytest.raises(YamlError, match="nesting deeper"):
        load(text + "x: " + deep_flow() + "\n", "big.yaml")
    assert gc.isenabled()
    gc.disable()
    try:
        load(text, "big.yaml")
        assert not gc.isenabled()  # a program that runs without the collector keeps it off
    finally:
        gc.enable()
