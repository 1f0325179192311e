"""YAML loading that remembers where every key and item came from.

Errors a technician reads must name the file and the line; PyYAML's plain loaders forget positions,
so we compose the node graph and build plain Python objects ourselves, recording the line of every
path (`("devices", 2, "poll")`). Duplicate keys, which YAML silently overwrites, are reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

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


def load(text: str, file: str, max_nodes: int = MAX_NODES) -> tuple[Any, Positions]:
    """Parse YAML text; returns the plain data and the positions. Raises YamlError."""
    positions = Positions(file)
    built = 0
    loader = yaml.SafeLoader(text)
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
        positions.lines.setdefault(path, n.start_mark.line + 1)
        if isinstance(n, yaml.MappingNode):
            loader.flatten_mapping(n)  # resolves `<<:` merge keys
            out: dict[Any, Any] = {}
            for key_node, value_node in n.value:
                key = loader.construct_object(key_node, deep=True)
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

    data = build(node, ())
    if problems:
        raise YamlError(problems)
    return data, positions
