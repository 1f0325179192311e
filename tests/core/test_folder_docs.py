"""The README beside each driver and sink folder, and docs/modbus.md, stay true to the code.

A README's key table is checked against the pydantic models its site-file entries are validated
with: a key added to a model without a row fails, a row naming a key no model has fails, and a
default the table states must be the model's. Its YAML examples must load as a site file, and the
tests and documents it cites must exist.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import pytest
import yaml
from pydantic import BaseModel, TypeAdapter
from pydantic.fields import FieldInfo

from drivers.ble.config import BleDevice
from drivers.camera.config import CameraDevice
from drivers.modbus.config import ModbusDevice
from drivers.modbus.server import ServerConfig
from edge.config import Site, load_site_text
from edge.driver import DeviceConfig
from edge.mqtt.config import MqttSinkConfig
from edge.sync.http_sink import HttpSinkConfig
from edge.sync.influx_sink import InfluxSinkConfig

ROOT = Path(__file__).resolve().parents[2]
HEADER = ["key", "type", "default", "meaning"]
SINK_MODELS: list[type[BaseModel]] = [HttpSinkConfig, InfluxSinkConfig]


@dataclass(frozen=True)
class FolderDoc:
    path: str
    #: (prefix of the table's keys, model) for every model whose keys the table documents
    models: list[tuple[str, type[BaseModel]]]
    #: keys that choose the model (`driver:`, `type:`): required in the site file although the
    #: chosen model gives them a default
    selectors: tuple[str, ...]
    #: what the YAML examples must show besides validating: a site that uses the folder's code
    uses: Callable[[Site], bool]


def _sink_type(model: type[BaseModel]) -> object:
    return model.model_fields["type"].default


def _driver_doc(driver: str, model: type[BaseModel]) -> FolderDoc:
    """The README of the driver folder drivers/<driver>/, whose table documents the device `model`."""
    return FolderDoc(
        f"drivers/{driver}/README.md",
        [("", model)],
        ("driver",),
        lambda s: any(d.driver == driver for d in s.devices),
    )


READMES = [
    FolderDoc(
        "drivers/modbus/README.md",
        [("", ModbusDevice), ("modbus_server.", ServerConfig)],
        ("driver",),
        lambda s: any(d.driver == "modbus" for d in s.devices) and "modbus_server" in s.sections,
    ),
    _driver_doc("ble", BleDevice),
    _driver_doc("camera", CameraDevice),
    FolderDoc(
        "edge/mqtt/README.md",
        [("", MqttSinkConfig)],
        ("type",),
        lambda s: any(u.type == "mqtt" for u in s.upstream),
    ),
    FolderDoc(
        "edge/sync/README.md",
        [("", model) for model in SINK_MODELS],
        ("type",),
        lambda s: {u.type for u in s.upstream} == {_sink_type(m) for m in SINK_MODELS},
    ),
]
IDS = [d.path for d in READMES]


# ---------------------------------------------------------------- models
def _nested_model(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The model a field holds (directly, optionally or as list items) and whether it is a list."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _nested_model(arg)
            if found[0] is not None:
                return found
        return None, False
    if origin is list:
        inner, _ = _nested_model(typing.get_args(annotation)[0])
        return inner, True
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    return None, False


def model_keys(model: type[BaseModel], prefix: str = "") -> dict[str, tuple[FieldInfo, bool]]:
    """Every key of `model` as the tables write it (`connection.host`, `points[].scale`), with its
    field and whether it holds a nested model (whose own keys are the ones that need a row)."""
    out: dict[str, tuple[FieldInfo, bool]] = {}
    for name, field in model.model_fields.items():
        key = prefix + name
        inner, is_list = _nested_model(field.annotation)
        out[key] = (field, inner is not None)
        if inner is not None:
            out.update(model_keys(inner, key + ("[]." if is_list else ".")))
    return out


def documented_models(doc: FolderDoc) -> list[dict[str, tuple[FieldInfo, bool]]]:
    return [model_keys(model, prefix) for prefix, model in doc.models]


# ---------------------------------------------------------------- markdown
def read(path: str) -> str:
    return (ROOT / path).read_text(encoding="utf-8")


def yaml_blocks(text: str) -> list[str]:
    return re.findall(r"^```yaml\n(.*?)^```", text, re.S | re.M)


def load_example(block: str, path: str) -> Site:
    data = yaml.safe_load(block)
    prefix = "" if isinstance(data, dict) and "site" in data else "site: {id: doc-site}\n"
    return load_site_text(prefix + block, path)


@dataclass(frozen=True)
class Row:
    line: int
    keys: list[str]
    cells: list[str]


def _cells(line: str) -> list[str]:
    inner = line.strip().strip("|")
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", inner)]


def key_rows(text: str) -> list[Row]:
    """The rows of every table whose header is `| key | type | default | meaning |`."""
    rows: list[Row] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("|") and [c.lower() for c in _cells(lines[i])] == HEADER:
            i += 2  # the header and its | --- | line
            while i < len(lines) and lines[i].startswith("|"):
                cells = _cells(lines[i])
                keys = re.findall(r"`([^`]+)`", cells[0])
                rows.append(Row(i + 1, keys, cells))
                i += 1
        i += 1
    return rows


def cited_paths(text: str) -> Iterator[str]:
    yield from re.findall(r"\btests/[\w./-]*[\w/]", text)


def links(text: str) -> Iterator[str]:
    yield from re.findall(r"\]\(((?!https?:|#)[^)#]+)(?:#[^)]*)?\)", text)


# ---------------------------------------------------------------- the README checks
@pytest.mark.parametrize("doc", READMES, ids=IDS)
def test_every_yaml_example_is_a_valid_site_file(doc: FolderDoc) -> None:
    blocks = yaml_blocks(read(doc.path))
    assert blocks, f"{doc.path} has no ```yaml example"
    sites = [load_example(block, doc.path) for block in blocks]
    assert any(doc.uses(site) for site in sites), f"no example of {doc.path} shows what its folder provides"


@pytest.mark.parametrize("doc", READMES, ids=IDS)
def test_every_model_key_has_a_row(doc: FolderDoc) -> None:
    documented = {key for row in key_rows(read(doc.path)) for key in row.keys}
    missing = sorted(
        key
        for keys in documented_models(doc)
        for key, (_field, container) in keys.items()
        if not container and key not in documented
    )
    assert not missing, f"{doc.path}: keys of the config models missing from its key table: {missing}"


@pytest.mark.parametrize("doc", READMES, ids=IDS)
def test_every_row_names_a_model_key_and_its_default(doc: FolderDoc) -> None:
    models = documented_models(doc)
    rows = key_rows(read(doc.path))
    assert rows, f"{doc.path} has no | key | type | default | meaning | table"
    for row in rows:
        where = f"{doc.path}:{row.line}"
        assert len(row.cells) == len(HEADER) and all(row.cells), f"{where}: a row needs all four cells"
        assert row.keys, f"{where}: the key cell names no `key`"
        for key in row.keys:
            fields = [keys[key][0] for keys in models if key in keys]
            assert fields, f"{where}: `{key}` is not a key of any config model of this folder"
            for field in fields:
                check_default(row.cells[2], field, key in doc.selectors, f"{where} `{key}`")


def check_default(cell: str, field: FieldInfo, selector: bool, where: str) -> None:
    """`required`, a `value` (parsed as the site file would be) equal to the model's default, or
    prose for a default left unset (None or "") that the code fills in."""
    if cell.startswith("required"):
        assert field.is_required() or selector, f"{where}: the table says required, the model has a default"
        return
    assert not field.is_required(), f"{where}: the model requires this key; the table gives a default"
    expected = field.get_default(call_default_factory=True)
    value = re.match(r"`([^`]*)`", cell)
    if value is None:
        assert expected in (None, ""), (
            f"{where}: default {cell!r} is not a `value`; the model's is {expected!r}"
        )
        return
    annotation: Any = Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
    adapter: TypeAdapter[Any] = TypeAdapter(annotation)
    stated = adapter.validate_python(yaml.safe_load(value.group(1)))
    assert stated == expected, (
        f"{where}: the table's default {value.group(1)} is {stated!r}, the model's {expected!r}"
    )


@pytest.mark.parametrize("doc", READMES, ids=IDS)
def test_cited_tests_and_links_exist(doc: FolderDoc) -> None:
    text = read(doc.path)
    cited = list(cited_paths(text))
    assert cited, f"{doc.path} does not say which tests cover its folder"
    for path in cited:
        assert (ROOT / path).exists(), f"{doc.path} cites a missing {path}"
    targets = list(links(text))
    assert any(t.endswith(".md") and "docs/" in t for t in targets), f"{doc.path} does not link its long doc"
    for target in targets:
        assert ((ROOT / doc.path).parent / target).resolve().exists(), (
            f"{doc.path} links to a missing {target}"
        )


# ---------------------------------------------------------------- docs/modbus.md
MODBUS_DOC = "docs/modbus.md"


def _outside_parentheses(text: str) -> str:
    while True:
        stripped = re.sub(r"\([^()]*\)", "", text)
        if stripped == text:
            return text
        text = stripped


def _paragraph(text: str, start: str) -> str:
    """The paragraph of `text` that begins with `start`."""
    found = re.search(rf"^{re.escape(start)}(.*?)(?:\n\n|\Z)", text, re.S | re.M)
    assert found is not None, f"{MODBUS_DOC} has no paragraph starting {start!r}"
    return found.group(1)


def _yaml_keys(data: Any) -> set[str]:
    if isinstance(data, dict):
        return {str(k) for k in data} | {k for v in data.values() for k in _yaml_keys(v)}
    if isinstance(data, list):
        return {k for v in data for k in _yaml_keys(v)}
    return set()


def test_modbus_doc_examples_are_valid_site_files() -> None:
    blocks = yaml_blocks(read(MODBUS_DOC))
    assert len(blocks) >= 2
    for block in blocks:
        load_example(block, MODBUS_DOC)


@pytest.mark.parametrize(
    ("start", "field"),
    [
        ("Point keys:", ModbusDevice.model_fields["points"]),
        ("Served point keys:", ServerConfig.model_fields["points"]),
    ],
    ids=["points", "modbus_server.points"],
)
def test_modbus_doc_key_lists_match_the_models(start: str, field: FieldInfo) -> None:
    """The key lists in prose name every key of the model and nothing else (what is in
    parentheses there are values and notes, not keys)."""
    listed = set(re.findall(r"`([a-z_]+)`", _outside_parentheses(_paragraph(read(MODBUS_DOC), start))))
    inner, _ = _nested_model(field.annotation)
    assert inner is not None
    fields = set(inner.model_fields)
    assert listed == fields, (
        f"{MODBUS_DOC} {start!r}: missing {sorted(fields - listed)}, unknown {sorted(listed - fields)}"
    )


def test_modbus_doc_connection_table_names_every_connection_key() -> None:
    text = read(MODBUS_DOC)
    table = re.search(r"^\| transport \| keys \| notes \|\n\|.*\n((?:\|.*\n)+)", text, re.M)
    assert table is not None, f"{MODBUS_DOC} has no | transport | keys | notes | table"
    listed = {"transport"}
    for line in table.group(1).splitlines():
        listed |= {k.split(":")[0] for k in re.findall(r"`([^`]+)`", _cells(line)[1])}
    connection, _ = _nested_model(ModbusDevice.model_fields["connection"].annotation)
    assert connection is not None
    fields = set(connection.model_fields)
    assert listed == fields, (
        f"{MODBUS_DOC} connection table: missing {sorted(fields - listed)}, unknown {sorted(listed - fields)}"
    )


def test_modbus_doc_examples_show_every_device_and_server_key() -> None:
    """The device entry and the `modbus_server:` example together show each key the two models
    add to the common device keys (those are in drivers/modbus/README.md)."""
    shown = {k for block in yaml_blocks(read(MODBUS_DOC)) for k in _yaml_keys(yaml.safe_load(block))}
    wanted = (set(ModbusDevice.model_fields) - set(DeviceConfig.model_fields)) | set(
        ServerConfig.model_fields
    )
    assert wanted <= shown, f"{MODBUS_DOC} examples do not show {sorted(wanted - shown)}"


def test_modbus_doc_key_references_exist() -> None:
    """`key: value` written in the prose names a key of a Modbus model, of a rule's action (where
    a rule feeds a served point), or `exclude_points:` (taken out of the entry by
    edge.config.merge_profile before the model sees it)."""
    from rules.model import Action

    text = read(MODBUS_DOC)
    known = {"modbus_server", "devices", "exclude_points", *Action.model_fields}
    models: list[type[BaseModel]] = [ModbusDevice, ServerConfig]
    for model in models:
        known |= {key.rpartition(".")[2] for key in model_keys(model)}
    referenced = set(re.findall(r"`([a-z_]+):(?: [^`]*)?`", text))
    assert referenced, f"{MODBUS_DOC}: no `key: value` found (has the pattern changed?)"
    assert referenced <= known, f"{MODBUS_DOC} names keys no Modbus model has: {sorted(referenced - known)}"


def test_every_driver_sink_and_section_of_the_registry_is_documented_here() -> None:
    """A driver, sink or site-file section a plugin of this repository adds must get its README
    row here (the sim driver, for tests and the demo, is documented in the README's Devices)."""
    from edge.plugins import registry

    documented = {model for doc in READMES for _, model in doc.models}
    plugins = [
        p for p in registry().plugins if p.name in {"modbus", "ble", "camera", "sync", "rules", "mqtt"}
    ]
    for plugin in plugins:
        models = [spec.config() for spec in (*plugin.drivers.values(), *plugin.sinks.values())]
        models += [load() for key, load in plugin.sections.items() if key != "rules"]  # docs/rules.md
        missing = [m.__name__ for m in models if m not in documented]
        assert missing == [], f"{plugin.name}: no README table documents {missing}"
