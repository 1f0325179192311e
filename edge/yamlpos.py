"""YAML loading that remembers where every key and item came from.

Errors a technician reads must name the file and the line; PyYAML's plain loaders forget positions,
so we compose the node graph and build plain Python objects ourselves, recording the line of every
path (`("devices", 2, "poll")`). Duplicate keys, which YAML silently overwrites, are reported.

Every document is bounded before it can cost much: its size (`max_bytes`), its nesting depth
(`max_depth`, checked while composing: PyYAML's composer recurses once per level, so a
5,000-deep `[[[…]]]` would otherwise end in RecursionError) and its value count once aliases are
expanded (`max_nodes`, the "billion laughs"). Each limit is a located YamlError like any other.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from typing import Any

import yaml

from edge.gcpause import gc_paused
from edge.units import format_size

Path = tuple[str | int, ...]


@dataclass
class Problem:
    """One configuration error, located."""

    file: str
    line: int | None
    path: Path
    message: str
    column: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        key = format_path(self.path)
        return f"{where}: {key}: {self.message}" if key else f"{where}: {self.message}"


@dataclass
class Positions:
    """Line numbers (1-based) of every path in a loaded document."""

    file: str
    lines: dict[Path, int] = field(default_factory=dict)

    def line_of(self, path: Path) -> int | None:
        """Line of `path`, or of its nearest ancestor that has one."""
        p = tuple(path)
        while p:
            if p in self.lines:
                return self.lines[p]
            p = p[:-1]
        return self.lines.get((), None)

    def problem(self, path: Path, message: str) -> Problem:
        return Problem(self.file, self.line_of(path), tuple(path), message)


class YamlError(Exception):
    def __init__(self, problems: list[Problem]):
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


def format_path(path: Path) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


MAX_NODES = 200_000  # a "billion laughs" document (aliases of aliases) must not expand unbounded
MAX_DEPTH = 64  # a real site file nests about 6 levels deep, a rule pack about 8
MAX_BYTES = 1024 * 1024  # a large site is ~100 KB; pure-Python parsing takes seconds per MiB
GC_PAUSE_BYTES = 64 * 1024  # from this size on, parsing pauses the cyclic garbage collector


def too_large(file: str, size: int, max_bytes: int) -> YamlError:
    return YamlError(
        [
            Problem(
                file,
                None,
                (),
                f"file too large: {size:,} bytes ({format_size(size)}); "
                f"at most {max_bytes:,} bytes ({format_size(max_bytes)}) are accepted",
            )
        ]
    )


def too_deep(file: str, line: int, path: Path, max_depth: int, column: int | None = None) -> YamlError:
    return YamlError(
        [
            Problem(
                file,
                line,
                path,
                f"nesting deeper than {max_depth} levels (mappings and lists inside each other, "
                "aliases and merge keys included)",
                column,
            )
        ]
    )


def read_text(path: str | os.PathLike[str], max_bytes: int = MAX_BYTES) -> str:
    """The UTF-8 text of a YAML file; YamlError if it is larger than `max_bytes`, found without
    reading more than that (a 100 MB file costs nothing). OSError and UnicodeDecodeError pass."""
    with open(path, "rb") as f:
        data = f.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise too_large(os.fspath(path), os.fstat(f.fileno()).st_size, max_bytes)
    return data.decode("utf-8")


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader whose composer refuses a collection deeper than `max_depth` before recursing
    into it, so its recursion never goes further than the limit."""

    def __init__(self, text: str, file: str, max_depth: int) -> None:
        super().__init__(text)
        self.file = file
        self.max_depth = max_depth
        self.depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if not self.check_event(yaml.CollectionStartEvent):
            return super().compose_node(parent, index)
        self.depth += 1
        try:
            if self.depth > self.max_depth:
                mark = self.peek_event().start_mark
                raise too_deep(self.file, mark.line + 1, (), self.max_depth, mark.column + 1)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _dismantle(root: yaml.Node, loader: yaml.SafeLoader) -> None:
    """Free a large node graph one node at a time. Dropped at once, its million objects are
    deallocated in one go that holds the GIL: a parse in a worker thread then stalled the event
    loop for most of a second at its very end."""
    loader.constructed_objects.clear()  # scalar values only: the nodes below still hold them
    stack: list[Any] = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, yaml.CollectionNode):
            items, node.value = node.value, []
            for item in items:
                if isinstance(item, tuple):
                    stack.extend(item)
                else:
                    stack.append(item)


def load(
    text: str,
    file: str,
    max_nodes: int = MAX_NODES,
    max_depth: int = MAX_DEPTH,
    max_bytes: int = MAX_BYTES,
) -> tuple[Any, Positions]:
    """Parse YAML text; returns the plain data and the positions. Raises YamlError, also for a
    document larger than `max_bytes` (UTF-8), nested deeper than `max_depth`, or expanding to
    more than `max_nodes` values."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise too_large(file, size, max_bytes)
    large = size >= GC_PAUSE_BYTES
    with gc_paused() if large else contextlib.nullcontext():
        return _load(text, file, max_nodes, max_depth, large)


def _load(text: str, file: str, max_nodes: int, max_depth: int, large: bool) -> tuple[Any, Positions]:
    positions = Positions(file)
    built = 0
    loader = _BoundedLoader(text, file, max_depth)
    problems: list[Problem] = []
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        msg = f"YAML syntax error: {exc.problem or exc}"
        if exc.context:
            msg += f" ({exc.context})"
        raise YamlError([Problem(file, line, (), msg, mark.column + 1 if mark else None)]) from None
    except yaml.YAMLError as exc:
        raise YamlError([Problem(file, None, (), f"YAML error: {exc}")]) from None
    finally:
        loader.dispose()
    if node is None:
        return None, positions

    def build(n: yaml.Node, path: Path) -> Any:
        nonlocal built
        built += 1
        if built > max_nodes:
            raise YamlError(
                [
                    Problem(
                        file,
                        n.start_mark.line + 1,
                        path,
                        f"document too large: more than {max_nodes} values once aliases are expanded",
                    )
                ]
            )
        # aliases stack collections deeper than the text shows (each anchor wrapping the last)
        if len(path) > max_depth:
            raise too_deep(file, n.start_mark.line + 1, path[:2], max_depth)
        positions.lines.setdefault(path, n.start_mark.line + 1)
        if isinstance(n, yaml.MappingNode):
            loader.flatten_mapping(n)  # resolves `<<:` merge keys
            out: dict[Any, Any] = {}
            for key_node, value_node in n.value:
                # a collection key is never a plain word, and constructing one recurses as deep
                # as its aliases reach: only scalar keys are constructed
                key = (
                    loader.construct_object(key_node, deep=True)
                    if isinstance(key_node, yaml.ScalarNode)
                    else None
                )
                if not isinstance(key, str | int | float | bool):
                    problems.append(
                        Problem(file, key_node.start_mark.line + 1, path, "keys must be plain words")
                    )
                    continue
                pkey: str | int = (
                    key if isinstance(key, str | int) and not isinstance(key, bool) else str(key)
                )
                if key in out:
                    problems.append(
                        Problem(
                            file,
                            key_node.start_mark.line + 1,
                            (*path, pkey),
                            f"duplicate key {key!r} (first at line {positions.lines.get((*path, pkey))})",
                        )
                    )
                    continue
                child = (*path, pkey)
                positions.lines[child] = key_node.start_mark.line + 1
                out[key] = build(value_node, child)
            return out
        if isinstance(n, yaml.SequenceNode):
            return [build(item, (*path, i)) for i, item in enumerate(n.value)]
        try:
            return loader.construct_object(n, deep=True)
        except yaml.YAMLError as exc:
            problems.append(Problem(file, n.start_mark.line + 1, path, f"bad value: {exc}"))
            return None

    try:
        data = build(node, ())
    except RecursionError:
        # merge keys chained through anchors the walk skipped (values under refused keys) are
        # flattened recursively; the checks above bound every other path
        raise too_deep(file, node.start_mark.line + 1, (), max_depth) from None
    finally:
        if large:  # the graph parsed with the GC paused
            _dismantle(node, loader)
    if problems:
        raise YamlError(problems)
    return data, positions
