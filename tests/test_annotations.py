"""Every public function and method of the host packages is annotated (mypy checks the rest).

Read with ``ast`` (nothing is imported). Public: a module-level function or a method of a
module-level class (nested classes too) whose name does not start with ``_``, plus ``__init__``.
Every parameter needs an annotation (``self``/``cls`` of a method exempt, ``*args``/``**kwargs``
included) and so does the return, except ``__init__``'s. Functions nested inside functions are
closures, not interface, and are not checked. The type checker itself runs as a separate gate:
``mypy --check-untyped-defs --disallow-incomplete-defs train convert``.
"""

import ast
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
CHECKED = ("train", "convert", "fer_edge")


def _is_public(name):
    return name == "__init__" or not name.startswith("_")


def _missing(func, in_class):
    """What ``func`` leaves unannotated: parameter names, and 'return'."""
    args = func.args
    positional = list(args.posonlyargs) + list(args.args)
    static = any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in func.decorator_list)
    if in_class and not static and positional and positional[0].arg in ("self", "cls"):
        positional = positional[1:]
    params = positional + list(args.kwonlyargs)
    missing = [a.arg for a in params if a.annotation is None]
    missing += ["*" + a.arg for a in (args.vararg,) if a is not None and a.annotation is None]
    missing += ["**" + a.arg for a in (args.kwarg,) if a is not None and a.annotation is None]
    if func.returns is None and func.name != "__init__":
        missing.append("return")
    return missing


def unannotated(source, filename="<source>"):
    """['file:line: name (missing: ...)'] for every public function or method of ``source``
    lacking a parameter or return annotation."""
    found = []

    def visit(body, owner):
        for node in body:
            if isinstance(node, ast.ClassDef):
                if _is_public(node.name):
                    visit(node.body, owner + node.name + ".")
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _is_public(node.name):
                missing = _missing(node, bool(owner))
                if missing:
                    found.append(
                        "{}:{}: {}{} (missing: {})".format(filename, node.lineno, owner, node.name, ", ".join(missing))
                    )
            elif isinstance(node, ast.If):  # e.g. definitions under `if TYPE_CHECKING:`
                visit(node.body, owner)
                visit(node.orelse, owner)
            elif isinstance(node, ast.Try):  # e.g. a fallback definition under `except ImportError:`
                for part in [node.body, node.orelse, node.finalbody] + [h.body for h in node.handlers]:
                    visit(part, owner)

    visit(ast.parse(source, filename).body, "")
    return found


def _files(package):
    return [p for p in sorted((REPO / package).rglob("*.py")) if "__pycache__" not in p.parts]


@pytest.mark.parametrize("package", CHECKED)
def test_public_functions_are_annotated(package):
    files = _files(package)
    assert files, "no Python files under {}/".format(package)
    problems = []
    for path in files:
        problems += unannotated(path.read_text(encoding="utf-8"), str(path.relative_to(REPO)))
    assert not problems, "{} public function(s) without full annotations:\n{}".format(
        len(problems), "\n".join(problems)
    )


def test_checker_sees_what_is_missing():
    source = """
def good(a: int, *rest: str, flag: bool = False, **kw: int) -> None: ...
def no_return(a: int): ...
def no_param(a, b: int) -> int: ...
def _private(a): ...
async def coro(a) -> None: ...
def outer() -> None:
    def inner(x): ...
class Thing:
    def __init__(self, a: int): ...
    def method(self, b) -> None: ...
    @classmethod
    def make(cls) -> "Thing": ...
    @staticmethod
    def helper(self) -> None: ...
    def __len__(self): ...
    def star(self, *args, **kwargs) -> None: ...
    class Inner:
        def deep(self): ...
class _Hidden:
    def method(self, b): ...
if TYPE_CHECKING:
    def typed_only(a) -> None: ...
try:
    import fast
except ImportError:
    def fallback(a) -> None: ...
"""
    found = unannotated(source, "m.py")
    assert found == [
        "m.py:3: no_return (missing: return)",
        "m.py:4: no_param (missing: a)",
        "m.py:6: coro (missing: a)",
        "m.py:11: Thing.method (missing: b)",
        "m.py:15: Thing.helper (missing: self)",
        "m.py:17: Thing.star (missing: *args, **kwargs)",
        "m.py:19: Thing.Inner.deep (missing: return)",
        "m.py:23: typed_only (missing: a)",
        "m.py:27: fallback (missing: a)",
    ]
