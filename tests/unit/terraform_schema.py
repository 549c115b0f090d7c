"""The google provider's own schema, read offline, and the checks of terraform/ against it.

No provider can be downloaded where the tests run, so `terraform validate` cannot run. The PyPI package
cdktn-provider-google is generated from the provider's schema (21.1.0: google provider 8.7.0) and carries it
as a jsii assembly: for each resource a class whose docs name the resource type, and a `<Class>Config`
interface whose properties are its arguments (camelCase), a nested block being a property typed by another
interface; computed attributes are the class's (and the nested `...OutputReference` classes') properties.
The wheel is only read as a zip, never installed or imported.

    python -m tests.unit.terraform_schema fetch     # download the wheel into .cache/ (make does this)

The compact schema built from it is cached beside the wheel as JSON:
    {"resource" | "data": {type: block id},
     "blocks": {id: {"args": {name: child id | null}, "required": [...], "reads": {name: child id | null}}}}
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PACKAGE, VERSION = "cdktn-provider-google", "21.1.0"
CACHE = ROOT / ".cache" / "provider-schema"
WHEEL = CACHE / f"cdktn_provider_google-{VERSION}-py3-none-any.whl"
COMPACT = CACHE / f"google-{VERSION}.schema.json"
_SCHEMA_FORMAT = 1

# Meta-arguments Terraform itself accepts in every resource and data block.
META_ARGS = {"count", "for_each", "depends_on", "provider", "lifecycle", "provisioner", "connection"}
LIFECYCLE_ARGS = {"create_before_destroy", "prevent_destroy", "ignore_changes", "replace_triggered_by",
                  "precondition", "postcondition"}
# Keys python-hcl2 adds to what it parses.
_HCL_KEYS = {"__is_block__", "__comments__", "__inline_comments__", "__start_line__", "__end_line__"}

# Resources that exist only in the google-beta provider, so not in this schema. Taken from the provider's
# documentation (google_project_service_identity: arguments `service`, `project`; attributes `email`,
# `member`, `id`; a `timeouts` block).
BETA_ONLY: dict[str, dict[str, Any]] = {
    "google_project_service_identity": {
        "args": {"service": None, "project": None, "timeouts": "beta:timeouts"},
        "required": ["service"],
        "reads": {"service": None, "project": None, "email": None, "member": None, "id": None},
    },
    "beta:timeouts": {"args": {"create": None, "read": None, "update": None, "delete": None}, "required": [],
                      "reads": {}},
}


def fetch() -> Path:
    """The wheel, downloaded once (no dependencies, ~67 MB) into .cache/; safe to run from two processes."""
    if WHEEL.exists():
        return WHEEL
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                        "--no-deps", "--only-binary=:all:", "--dest", tmp, f"{PACKAGE}=={VERSION}"], check=True)
        os.replace(Path(tmp) / WHEEL.name, WHEEL)
    return WHEEL


def snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def _target(kind: dict[str, Any]) -> str | None:
    """The fqn a property's type refers to (directly, as a collection's element, or inside a union)."""
    if "fqn" in kind:
        return kind["fqn"]
    if "collection" in kind:
        return _target(kind["collection"]["elementtype"])
    for member in kind.get("union", {}).get("types", []):
        found = _target(member)
        if found and not found.startswith("cdktn."):
            return found
    return None


def _compact(types: dict[str, Any]) -> dict[str, Any]:
    blocks: dict[str, Any] = {}

    def config_block(fqn: str, cls: str | None = None) -> str:
        """A block's id is its Config interface; its readable attributes come from `cls` (the resource class,
        or the block's OutputReference class)."""
        if fqn not in blocks:
            blocks[fqn] = {}  # placeholder: blocks may refer to each other
            args: dict[str, str | None] = {}
            required = []
            for prop in types[fqn].get("properties", []):
                target = _target(prop["type"])
                nested = target if target in types and types[target].get("kind") == "interface" else None
                args[snake(prop["name"])] = config_block(nested) if nested else None
                if not prop.get("optional"):
                    required.append(snake(prop["name"]))
            blocks[fqn] = {"args": args, "required": required, "reads": reads(cls or fqn + "OutputReference")}
        return fqn

    def reads(cls: str) -> dict[str, str | None]:
        """Readable attributes (arguments and computed ones) of a resource class or an OutputReference class."""
        found: dict[str, str | None] = {}
        for prop in types.get(cls, {}).get("properties", []):
            name = prop["name"]
            if name.endswith("Input") or name in ("tfResourceType", "internalValue", "fqn"):
                continue
            target = _target(prop["type"]) or ""
            element = target[: -len("List")] if target.endswith("List") else target
            element = element[: -len("OutputReference")] if element.endswith("OutputReference") else element
            found[snake(name)] = element if element + "OutputReference" in types else None
        return found

    resource: dict[str, str] = {}
    data: dict[str, str] = {}
    for fqn, spec in types.items():
        if spec.get("kind") != "class":
            continue
        match = re.search(r"/docs/(resources|data-sources)/\S+ (google_\w+)\}", spec.get("docs", {}).get("summary", ""))
        if match and fqn + "Config" in types:
            (resource if match.group(1) == "resources" else data)[match.group(2)] = config_block(fqn + "Config", fqn)
    # Blocks reached only through `reads` (computed nested attributes) need their readable names too.
    pending = {child for b in list(blocks.values()) for child in b["reads"].values() if child}
    while pending:
        fqn = pending.pop()
        if fqn not in blocks:
            blocks[fqn] = {"args": {}, "required": [], "reads": reads(fqn + "OutputReference")}
            pending |= {c for c in blocks[fqn]["reads"].values() if c and c not in blocks}
    return {"format": _SCHEMA_FORMAT, "resource": resource, "data": data, "blocks": blocks}


def load() -> dict[str, Any]:
    """The compact schema (built from the wheel once, ~5 s; then read from the cache)."""
    if COMPACT.exists():
        schema = json.loads(COMPACT.read_text())
        if schema.get("format") == _SCHEMA_FORMAT:
            return schema
    wheel = zipfile.ZipFile(fetch())
    archive = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(wheel.read(archive))) as tgz:
        member = tgz.extractfile("package/.jsii")
        assert member is not None
        types = json.loads(member.read())["types"]
    schema = _compact(types)
    tmp = COMPACT.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(schema))
    os.replace(tmp, COMPACT)
    return schema


# --- Checks ---------------------------------------------------------------------------------------------------

def _block(schema: dict[str, Any], block_id: str) -> dict[str, Any]:
    return BETA_ONLY.get(block_id) or schema["blocks"][block_id]


def type_block(schema: dict[str, Any], kind: str, rtype: str) -> str | None:
    """Block id of a resource or data source type, or None if the provider has no such type."""
    if kind == "resource" and rtype in BETA_ONLY:
        return rtype
    return schema[kind].get(rtype)


def _is_block(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) and v.get("__is_block__")
                                                           for v in value)


def check_body(schema: dict[str, Any], body: dict[str, Any], block_id: str, where: str,
               top: bool = False) -> Iterator[str]:
    """Problems with one block's arguments and nested blocks (recursively); empty when all are known."""
    spec = _block(schema, block_id)
    args = spec["args"]
    for key, value in body.items():
        if key in _HCL_KEYS or (top and key in META_ARGS - {"lifecycle", "dynamic"}):
            continue
        if top and key == "lifecycle":
            for item in value:
                unknown = set(item) - _HCL_KEYS - LIFECYCLE_ARGS
                if unknown:
                    yield f"{where}: lifecycle has unknown arguments {sorted(unknown)}"
            continue
        if key == "dynamic":
            for item in value:
                for label, dyn in item.items():
                    if label in _HCL_KEYS:
                        continue
                    name = label.strip('"')
                    if args.get(name) is None:
                        yield f"{where}: dynamic \"{name}\" is not a block of this {'resource' if top else 'block'}"
                        continue
                    for content in dyn.get("content", []):
                        yield from check_body(schema, content, args[name], f"{where}.{name}")
            continue
        if key not in args:
            yield f"{where}: unknown argument or block \"{key}\""
            continue
        child = args[key]
        if child is None:
            if _is_block(value):
                yield f"{where}: \"{key}\" is an argument, written as a block"
        elif _is_block(value):
            for item in value:
                yield from check_body(schema, item, child, f"{where}.{key}")
        elif isinstance(value, dict):  # object written as an attribute
            yield from check_body(schema, value, child, f"{where}.{key}")
    present = set(body) | {label.strip('"') for d in body.get("dynamic", []) for label in d}
    for name in spec["required"]:
        if name not in present:
            yield f"{where}: required argument \"{name}\" is missing"


_REF = re.compile(r"(?<![\w.])(data\.)?(google_\w+)\.(\w+)((?:\[[^\]]*\])?)((?:\.\w+(?:\[[^\]]*\])*)*)")


def references(text: str) -> Iterator[tuple[str, str, str, list[str]]]:
    """(kind, type, name, attribute path) of each resource or data source reference in an expression."""
    for m in _REF.finditer(text):
        path = [re.sub(r"\[.*", "", seg) for seg in m.group(5).split(".") if seg]
        yield ("data" if m.group(1) else "resource"), m.group(2), m.group(3), path


def check_reference(schema: dict[str, Any], kind: str, rtype: str, path: list[str]) -> str | None:
    """A problem with reading `path` from a resource of `rtype`, or None. Stops where the schema cannot say."""
    block_id = type_block(schema, kind, rtype)
    if block_id is None:
        return f"{kind} type {rtype} is not in the provider"
    reads = _block(schema, block_id)["reads"]
    for i, attr in enumerate(path):
        if attr not in reads:
            return f"{rtype} has no attribute {'.'.join(path[: i + 1])}"
        child = reads[attr]
        if child is None:
            return None
        reads = _block(schema, child)["reads"]
    return None


if __name__ == "__main__":
    if sys.argv[1:] == ["fetch"]:
        print(fetch())
        load()
    else:
        sys.exit("usage: python -m tests.unit.terraform_schema fetch")
