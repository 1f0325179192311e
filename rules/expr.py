"""The rule expression language: a validated subset of Python expressions, compiled once.

A rule's `if:`/`clear_if:` text is parsed with `ast`, checked node by node against an allow-list,
rewritten (window functions, time functions) and compiled into a plain Python function whose
arguments are the evaluation context. Evaluation then costs about what compiled Python costs.

Safety comes from what the compiler lets through, not from a runtime sandbox: only the node types
below, only the names in NAMES/FUNCTIONS, attributes only from METHODS (all harmless methods of
str/dict/list), no names starting with `_`, no lambdas, comprehensions, walrus, f-strings or
starred arguments, literal exponents within ±MAX_EXPONENT, constant folding that refuses huge
strings and numbers, and bounded source length, node count and nesting depth. The generated
function's globals hold no builtins at all (`__builtins__` is empty).

What the compiler cannot see is how large the values will be at run time: `str(value) * int(value)`
or `(int(ts) ** 64) ** 64` are small texts that build gigabytes. So every operation whose cost
grows with its operands' sizes is compiled into a guarded call (`_pow`, `_mul`, `_add`, `_mod`,
`_str`, `_int`, `_round`, `_sum`, in `rules.guards`) that estimates the size of its result from the
operands and raises `LimitExceeded` before computing anything larger than MAX_INT_BITS bits or MAX_SEQUENCE
characters/items; an expression evaluates in time and memory bounded by its node count times
those caps (plus linear scans of its inputs). Operations that cannot grow a value (comparisons,
`and`/`or`, float arithmetic, `-`, `/`, `//`, subscripts) stay native, and `Compiled.cost` counts
the guarded and size-dependent ones so the engine times only expressions that have any.
"""

from __future__ import annotations

import ast
import operator
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edge.units import parse_duration
from rules.guards import MAX_INT_BITS, MAX_SEQUENCE

MAX_SOURCE = 2000  # characters of one expression
MAX_NODES = 400  # AST nodes of one expression
MAX_DEPTH = 40  # nesting depth of the AST
MAX_EXPONENT = 64  # |n| in `x ** n`
MAX_LITERAL_ITEMS = 200  # items in a list/tuple literal

#: the evaluation context, in the order of the compiled function's arguments
ARGS = ("value", "prev", "point", "device", "name", "ts", "quality", "kind", "source", "severity", "payload")
NAMES = frozenset(ARGS) | {"True", "False", "None"}
WINDOW_FUNCTIONS = ("avg", "min", "max", "count", "rate", "delta", "sum")
#: name -> (min args, max args)
FUNCTIONS: dict[str, tuple[int, int]] = {
    "age": (1, 1),
    "p": (1, 1),
    "hour": (0, 0),
    "minute": (0, 0),
    "weekday": (0, 0),
    "between": (2, 2),
    "abs": (1, 1),
    "round": (1, 2),
    "int": (1, 1),
    "float": (1, 1),
    "str": (1, 1),
    "bool": (1, 1),
    "len": (1, 1),
    "any": (1, 1),
    "all": (1, 1),
    "min": (1, 10),
    "max": (1, 10),
    "avg": (2, 2),
    "count": (2, 2),
    "rate": (2, 2),
    "delta": (2, 2),
    "sum": (1, 2),
}
#: methods callable on values (str, dict payloads, lists); none of them builds large objects
METHODS = frozenset(
    "lower upper strip lstrip rstrip startswith endswith isdigit isalpha isalnum isspace casefold "
    "title count find split get keys values".split()
)
_TIME_RE = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)\Z")

_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_ALLOWED = (
    *(
        getattr(ast, n)
        for n in "Expression BoolOp And Or BinOp UnaryOp Not USub UAdd Compare Eq NotEq Lt LtE Gt "
        "GtE In NotIn Is IsNot IfExp Call Name Load Constant Attribute Tuple List Subscript".split()
    ),
    *_BINOPS,
)
_FORBIDDEN_WHY = {
    ast.Lambda: "lambdas are not allowed",
    ast.ListComp: "comprehensions are not allowed",
    ast.SetComp: "comprehensions are not allowed",
    ast.DictComp: "comprehensions are not allowed",
    ast.GeneratorExp: "generator expressions are not allowed",
    ast.NamedExpr: "the walrus operator := is not allowed",
    ast.JoinedStr: "f-strings are not allowed; use a message template in an action",
    ast.Starred: "starred arguments are not allowed",
    ast.Await: "await is not allowed",
    ast.Yield: "yield is not allowed",
    ast.YieldFrom: "yield is not allowed",
    ast.Slice: "slices are not allowed",
    ast.Dict: "dict literals are not allowed",
    ast.Set: "set literals are not allowed",
}


class ExprError(ValueError):
    """A compile error, located: rule id, field (`if`, `clear_if`, `then[0].expr`), line, column."""

    def __init__(self, message: str, *, rule: str = "", field: str = "", line: int = 1, column: int = 1):
        self.message = message
        self.rule = rule
        self.field = field
        self.line = line
        self.column = column
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ":".join(x for x in (f"rule {self.rule}" if self.rule else "", self.field) if x)
        pos = f"line {self.line}, column {self.column}"
        return f"{where}: {pos}: {self.message}" if where else f"{pos}: {self.message}"

    def as_dict(self) -> dict[str, Any]:
        """The located error as the rules API answers it (`errors[]` of a 422)."""
        return {key: getattr(self, key) for key in ("rule", "field", "line", "column", "message")}


@dataclass
class Compiled:
    """A compiled expression: `bind(env)` gives the callable taking the ARGS tuple."""

    source: str
    code: Any  # code object of `lambda <ARGS>: <expr>`
    windows: set[tuple[str | None, float]] = field(default_factory=set)  # (point or None=this, seconds)
    points: set[str] = field(default_factory=set)  # points read through p()/age()/windows
    cost: int = 0  # operations whose cost grows with their operands (0: constant-time per node)
    any_point: bool = False  # p()/age() of a computed point (`p(device + '.x')`): may read any point

    def bind(self, env: dict[str, Any]) -> Callable[..., Any]:
        # the code comes from a validated AST and env has empty builtins
        return eval(self.code, env)


def _fail(node: ast.AST | None, message: str) -> ExprError:
    line = getattr(node, "lineno", 1) or 1
    col = (getattr(node, "col_offset", 0) or 0) + 1
    return ExprError(message, line=line, column=col)


def _const_value(node: ast.AST) -> tuple[bool, Any]:
    if isinstance(node, ast.Constant):
        return True, node.value
    return False, None


def _literal_len(node: ast.AST) -> int:
    if isinstance(node, ast.Tuple):
        return len(node.elts)
    return len(node.value) if isinstance(node, ast.Constant) and isinstance(node.value, str) else 1


def _check_size(node: ast.AST, value: Any) -> None:
    if isinstance(value, str | bytes | tuple | list) and len(value) > MAX_SEQUENCE:
        raise _fail(node, f"this would build a value of {len(value)} items; at most {MAX_SEQUENCE}")
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > MAX_INT_BITS:
        raise _fail(node, f"this number is too large (more than {MAX_INT_BITS} bits)")


def _safe_fold(node: ast.BinOp, left: Any, right: Any) -> Any:
    """Evaluate a constant sub-expression at compile time, refusing anything that would explode."""
    op = type(node.op)
    if op is ast.Mult:
        for seq, n in ((left, right), (right, left)):
            if isinstance(seq, str | tuple | list) and isinstance(n, int):
                if len(seq) * n > MAX_SEQUENCE:
                    raise _fail(node, f"repetition would build {len(seq) * n} items; at most {MAX_SEQUENCE}")
    try:
        return _BINOPS[op](left, right)
    except (ArithmeticError, TypeError, ValueError) as exc:
        raise _fail(node, f"this constant expression fails: {type(exc).__name__}: {exc}") from None


class _Checker(ast.NodeTransformer):
    """Validates and rewrites the tree; collects window specs and points read."""

    def __init__(self) -> None:
        self.windows: set[tuple[str | None, float]] = set()
        self.points: set[str] = set()
        self.cost = 0
        self.any_point = False

    def generic_visit(self, node: ast.AST) -> ast.AST:
        if type(node) in _FORBIDDEN_WHY:
            raise _fail(node, _FORBIDDEN_WHY[type(node)])
        if not isinstance(node, _ALLOWED):
            raise _fail(node, f"{type(node).__name__} is not allowed in a rule expression")
        return super().generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        if not isinstance(node.value, int | float | str | bool | type(None)):
            raise _fail(node, f"{type(node.value).__name__} literals are not allowed")
        _check_size(node, node.value)
        return node

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id.startswith("_"):
            raise _fail(node, f"names starting with '_' are not allowed ({node.id!r})")
        if node.id not in NAMES:
            hint = " (a function: call it)" if node.id in FUNCTIONS else ""
            raise _fail(
                node,
                f"unknown name {node.id!r}{hint}; the names are: {', '.join(ARGS)}, True, False, None",
            )
        return node

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        # attributes exist only as method calls; visit_Call handles those
        raise _fail(
            node, f"attribute access ({node.attr!r}) is not allowed; methods: {', '.join(sorted(METHODS))}"
        )

    def visit_List(self, node: ast.List) -> ast.AST:
        if len(node.elts) > MAX_LITERAL_ITEMS:
            raise _fail(node, f"at most {MAX_LITERAL_ITEMS} items in a list")
        self.generic_visit(node)
        return ast.copy_location(ast.Tuple(elts=node.elts, ctx=ast.Load()), node)

    def visit_Tuple(self, node: ast.Tuple) -> ast.AST:
        if len(node.elts) > MAX_LITERAL_ITEMS:
            raise _fail(node, f"at most {MAX_LITERAL_ITEMS} items in a tuple")
        return self.generic_visit(node)

    def visit_Subscript(self, node: ast.Subscript) -> ast.AST:
        if isinstance(node.slice, ast.Slice):
            raise _fail(node, "slices are not allowed")
        if not isinstance(node.slice, ast.Constant) or not isinstance(node.slice.value, str | int):
            raise _fail(node, "indexing takes a constant key: payload['systolic'] or x[0]")
        return self.generic_visit(node)

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        self.generic_visit(node)
        if (
            isinstance(node.op, ast.Mod)
            and isinstance(node.left, ast.Constant)
            and isinstance(node.left.value, str)
        ):
            # '%0999999999d' % 1 would build a gigabyte (even while folding constants)
            raise _fail(node, "string formatting with % is not allowed; use a message template in an action")
        if isinstance(node.op, ast.Pow):
            ok, exp = _const_value(node.right)
            if not ok or isinstance(exp, bool) or not isinstance(exp, int | float):
                raise _fail(
                    node,
                    f"the exponent of ** must be a number literal between -{MAX_EXPONENT} and {MAX_EXPONENT}",
                )
            if abs(exp) > MAX_EXPONENT:
                raise _fail(node, f"exponent {exp} is too large; at most {MAX_EXPONENT}")
        lok, left = _const_value(node.left)
        rok, right = _const_value(node.right)
        if lok and rok:
            value = _safe_fold(node, left, right)
            _check_size(node, value)
            return ast.copy_location(ast.Constant(value), node)
        if isinstance(node.op, ast.Mult):
            # a literal sequence repeated by a computed count could still explode at run time
            for seq, other in ((node.left, node.right), (node.right, node.left)):
                is_seq = isinstance(seq, ast.Tuple) or (
                    isinstance(seq, ast.Constant) and isinstance(seq.value, str)
                )
                if is_seq:
                    ok, n = _const_value(other)
                    if not ok or not isinstance(n, int) or n * max(1, _literal_len(seq)) > MAX_SEQUENCE:
                        raise _fail(
                            node,
                            f"repeating a string or list needs a literal count (at most {MAX_SEQUENCE} items)",
                        )
        guard = _guard(node)
        if guard is None:
            return node
        self.cost += 1
        return self._call(node, guard, [node.left, node.right])

    def visit_UnaryOp(self, node: ast.UnaryOp) -> ast.AST:
        self.generic_visit(node)
        ok, v = _const_value(node.operand)
        if ok and isinstance(node.op, ast.USub) and isinstance(v, int | float) and not isinstance(v, bool):
            return ast.copy_location(ast.Constant(-v), node)
        return node

    def visit_Call(self, node: ast.Call) -> ast.AST:
        if node.keywords:
            raise _fail(node, "keyword arguments are not allowed")
        func = node.func
        if isinstance(func, ast.Attribute):
            if func.attr.startswith("_") or func.attr not in METHODS:
                raise _fail(
                    func, f"method {func.attr!r} is not allowed; methods: {', '.join(sorted(METHODS))}"
                )
            func.value = self.visit(func.value)
            node.args = [self.visit(a) for a in node.args]
            if len(node.args) > 3:
                raise _fail(node, f"{func.attr}() takes at most 3 arguments here")
            if not (isinstance(func.value, ast.Name) and func.value.id in _SHORT_NAMES):
                self.cost += 1  # a scan of a value that may be long (a payload text, a list)
            return node
        if not isinstance(func, ast.Name):
            self.visit(func)  # reports what it is (a lambda, ...) when that is not allowed
            raise _fail(node, "only named functions and allowed methods can be called")
        fname = func.id
        if fname.startswith("_"):
            raise _fail(func, f"names starting with '_' are not allowed ({fname!r})")
        if fname not in FUNCTIONS:
            raise _fail(func, f"unknown function {fname!r}; functions: {', '.join(sorted(FUNCTIONS))}")
        lo, hi = FUNCTIONS[fname]
        args = node.args
        # min/max/sum with (point, window) are window functions; otherwise the builtins
        is_window = fname in WINDOW_FUNCTIONS and len(args) == 2 and self._is_point_arg(args[0])
        if fname in ("avg", "count", "rate", "delta") and not is_window:
            raise _fail(node, f"{fname}() takes a point and a window: {fname}('dev.point', '5m')")
        if not lo <= len(args) <= hi and not is_window:
            raise _fail(
                node, f"{fname}() takes {lo if lo == hi else f'{lo} to {hi}'} arguments, not {len(args)}"
            )
        if is_window:
            return self._window(node, fname, args)
        if fname in ("p", "age"):
            target = "_p" if fname == "p" else "_age"
            if isinstance(args[0], ast.Constant):
                pt = self._point_literal(args[0], fname)
                self.points.add(pt)
                call_args: list[ast.expr] = [ast.Constant(pt)]
                if fname == "p":  # a point named: the site must have it (`_p_named`)
                    target = "_p_named"
            else:  # computed, e.g. p(device + '.current_b'): just a lookup of the latest value
                self.any_point = True  # (None for a point that is not there: a rule may ask that)
                call_args = [self.visit(args[0])]
            if fname == "age":
                call_args.append(ast.Name("ts", ast.Load()))
            return self._call(node, target, call_args)
        if fname in ("hour", "minute", "weekday"):
            return self._call(node, f"_{fname}", [ast.Name("ts", ast.Load())])
        if fname == "between":
            bounds = []
            for a in args:
                ok, v = _const_value(a)
                m = _TIME_RE.match(v) if ok and isinstance(v, str) else None
                if not m:
                    raise _fail(a, "between() takes two 'HH:MM' literals, e.g. between('22:00', '06:00')")
                bounds.append(int(m.group(1)) * 60 + int(m.group(2)))
            return self._call(
                node,
                "_between",
                [ast.Constant(bounds[0]), ast.Constant(bounds[1]), ast.Name("ts", ast.Load())],
            )
        node.args = [self.visit(a) for a in args]
        if fname in _SCANNING_FUNCTIONS:
            self.cost += 1
        return self._call(node, f"_{fname}", node.args)

    def visit_Compare(self, node: ast.Compare) -> ast.AST:
        self.generic_visit(node)
        self.cost += sum(1 for op in node.ops if isinstance(op, ast.In | ast.NotIn))
        return node

    @staticmethod
    def _is_point_arg(a: ast.AST) -> bool:
        return (isinstance(a, ast.Name) and a.id == "point") or (
            isinstance(a, ast.Constant) and isinstance(a.value, str) and "." in a.value
        )

    def _point_literal(self, a: ast.AST, fname: str) -> str:
        ok, v = _const_value(a)
        if not ok or not isinstance(v, str) or not re.fullmatch(r"[a-z0-9_-]+\.[a-z0-9_-]+", v):
            raise _fail(a, f"{fname}() takes a point id literal like 'meter-b1.power_kw'")
        return v

    def _window(self, node: ast.Call, fname: str, args: list[ast.expr]) -> ast.AST:
        point_arg = args[0]
        point: str | None
        if isinstance(point_arg, ast.Name):
            point = None
            p_ast: ast.expr = ast.Name("point", ast.Load())
        else:
            point = self._point_literal(point_arg, fname)
            self.points.add(point)
            p_ast = ast.Constant(point)
        ok, w = _const_value(args[1])
        try:
            if not ok or isinstance(w, bool):
                raise ValueError
            secs = parse_duration(w)
            if secs <= 0 or secs > 31 * 86400:
                raise ValueError
        except ValueError:
            raise _fail(
                args[1], f"{fname}() window must be a duration literal like '5m' (up to 31d)"
            ) from None
        self.windows.add((point, secs))
        method = "avg" if fname == "avg" else fname
        win = self._call(node, "_win", [p_ast, ast.Constant(secs)])
        return ast.copy_location(
            ast.Call(ast.Attribute(win, method, ast.Load()), [ast.Name("ts", ast.Load())], []), node
        )

    @staticmethod
    def _call(node: ast.AST, target: str, args: list[ast.expr]) -> ast.Call:
        return ast.copy_location(ast.Call(ast.Name(target, ast.Load()), args, []), node)


class _ContextAccess(ast.NodeTransformer):
    """`value` -> `_a[0]`: the function takes the context as one tuple, which makes the call as
    cheap as a plain lambda's (11 positional arguments would cost more than the expression)."""

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id in _ARG_INDEX:
            return ast.copy_location(
                ast.Subscript(ast.Name("_a", ast.Load()), ast.Constant(_ARG_INDEX[node.id]), ast.Load()), node
            )
        return node


_ARG_INDEX = {name: i for i, name in enumerate(ARGS)}
# context names that hold identifiers from the site file (point ids, device names): short texts
_SHORT_NAMES = frozenset({"point", "device", "name", "quality", "kind", "source", "severity"})
# functions whose cost grows with their argument (str/int/float of a long text, a long list)
_SCANNING_FUNCTIONS = frozenset({"str", "int", "float", "round", "sum", "min", "max", "any", "all"})


def _guard(node: ast.BinOp) -> str | None:
    """The guarded helper a (not constant-folded) operation compiles to; None: it stays native
    because it cannot grow a value (a float literal operand makes `*` float arithmetic or a
    TypeError, a number literal makes `+` arithmetic, a small literal exponent keeps `**` small)."""
    lok, left = _const_value(node.left)
    rok, right = _const_value(node.right)
    num_l = lok and isinstance(left, int | float) and not isinstance(left, bool)
    num_r = rok and isinstance(right, int | float) and not isinstance(right, bool)
    op = type(node.op)
    if op is ast.Pow:
        return "_pow" if isinstance(right, int) and not isinstance(right, bool) and right >= 2 else None
    if op is ast.Mult:
        return None if isinstance(left, float) or isinstance(right, float) else "_mul"
    if op is ast.Add:
        return None if num_l or num_r else "_add"
    if op is ast.Mod:
        return None if num_l else "_mod"
    return None


def _depth_and_count(tree: ast.AST) -> tuple[int, int]:
    depth, count = 0, 0
    stack = [(tree, 1)]
    while stack:  # iterative: a deep tree must not blow the recursion limit here
        node, d = stack.pop()
        count += 1
        depth = max(depth, d)
        if count > MAX_NODES or depth > MAX_DEPTH:
            return depth, count
        stack.extend((child, d + 1) for child in ast.iter_child_nodes(node))
    return depth, count


def _shift_lines(tree: ast.AST) -> None:
    for node in ast.walk(tree):
        if hasattr(node, "lineno"):
            node.lineno = max(1, node.lineno - 1)
            end = getattr(node, "end_lineno", None)
            if end is not None:
                setattr(node, "end_lineno", max(1, end - 1))  # noqa: B010 - not every AST type declares it


#: a duration written without quotes (`5m`, `1h30m`, `500ms`): Python reads a number followed by
#: letters as an "invalid decimal literal"
_BARE_DURATION = re.compile(r"(?<![\w.'\"])\d+(?:\.\d+)?(?:ms|[smhdw])(?:\d+(?:\.\d+)?(?:ms|[smhdw]))*\b")


def compile_expr(source: Any, *, rule: str = "", field: str = "if") -> Compiled:
    """Validate and compile one expression; raises ExprError (located) when it is not accepted."""
    try:
        return _compile(source)
    except ExprError as exc:
        exc.rule, exc.field = rule, field
        raise


def _compile(source: Any) -> Compiled:
    if isinstance(source, bool | int | float):
        source = repr(source)
    if not isinstance(source, str):
        raise ExprError(f"an expression must be text, not {type(source).__name__}")
    if not source.strip():
        raise ExprError("the expression is empty")
    if len(source) > MAX_SOURCE:
        raise ExprError(f"the expression is {len(source)} characters long; at most {MAX_SOURCE}")
    if "__" in source:
        raise ExprError("double underscores ('__') are not allowed", column=source.index("__") + 1)
    try:
        # inside parentheses an expression may span lines (YAML block scalars); the opening
        # parenthesis sits on its own line so reported columns stay those of the source
        tree = ast.parse("(\n" + source + "\n)", mode="eval")
        _shift_lines(tree)
    except SyntaxError as exc:
        lines = source.split("\n")
        line, column = max(1, (exc.lineno or 2) - 1), exc.offset or 1
        if line > len(lines):  # the error is at the end of the text
            line, column = len(lines), len(lines[-1]) + 1
        message = f"syntax error: {exc.msg}"
        bare = _BARE_DURATION.search(lines[line - 1]) if "decimal literal" in exc.msg else None
        if bare is not None:  # avg(point, 5m): a duration is text
            message += f"; a duration is quoted: '{bare.group(0)}', as in avg(point, '5m')"
        raise ExprError(message, line=line, column=column) from None
    except (RecursionError, MemoryError, ValueError):
        raise ExprError(f"the expression is nested too deeply; at most {MAX_DEPTH} levels") from None
    depth, count = _depth_and_count(tree)
    if depth > MAX_DEPTH:
        raise ExprError(f"the expression is nested too deeply; at most {MAX_DEPTH} levels")
    if count > MAX_NODES:
        raise ExprError(f"the expression is too large; at most {MAX_NODES} syntax nodes")
    checker = _Checker()
    body = _ContextAccess().visit(checker.visit(tree).body)
    fn = ast.Expression(
        ast.Lambda(
            ast.arguments(posonlyargs=[], args=[ast.arg("_a")], kwonlyargs=[], kw_defaults=[], defaults=[]),
            body,
        )
    )
    ast.fix_missing_locations(fn)
    try:
        with warnings.catch_warnings():  # e.g. "'int' object is not subscriptable": it fails at run time
            warnings.simplefilter("ignore")
            code = compile(fn, "<rule>", "eval")
    except (SyntaxError, RecursionError, MemoryError, ValueError) as exc:
        raise ExprError(f"cannot compile: {exc}") from None
    return Compiled(source, code, checker.windows, checker.points, checker.cost, checker.any_point)
