"""Named Avro types defined once and referenced by full name: expand and extract references.

An Avro schema defines a named type (record, enum, fixed) in full where it first occurs and
refers to it by name afterwards. A set of schema files that must load into one registry
(a Schema Registry, ``avsc``'s registry, fastavro's ``named_schemas``) may define each name only
once, so a type shared by several files (``streamtasks.TaskError``) lives in a file of its own
and the others refer to it by full name.

Invariants: :func:`expand` puts each referenced definition at its first occurrence, in the
order Avro parsers read a schema (fields in order, depth first), so the expanded schema has
exactly the Parsing Canonical Form (and CRC-64-AVRO fingerprint) of the self-contained schema
it came from; :func:`extract` is its inverse. Both are pure and never modify their input.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["defined_names", "expand", "extract", "full_name", "referenced_names"]

_PRIMITIVES = frozenset(("null", "boolean", "int", "long", "float", "double", "bytes", "string"))
_NAMED = frozenset(("record", "error", "enum", "fixed"))
_KEYWORDS = _PRIMITIVES | _NAMED | {"array", "map"}


def full_name(definition: Mapping[str, Any], namespace: str) -> str:
    """The full name of a named type defined in the enclosing ``namespace``."""
    name = str(definition["name"])
    if "." in name:
        return name
    ns = definition.get("namespace", namespace)
    return f"{ns}.{name}" if ns else name


def _resolve(reference: str, namespace: str) -> str:
    if "." in reference or not namespace:
        return reference
    return f"{namespace}.{reference}"


def _is_named(schema: Any) -> bool:
    return isinstance(schema, dict) and schema.get("type") in _NAMED and "name" in schema


def expand(schema: Any, named: Mapping[str, Any], namespace: str = "") -> Any:
    """``schema`` with the first reference to each type in ``named`` replaced by its definition.

    ``named`` maps full names to definitions (which may refer to each other). A name defined
    inline in ``schema`` before its first reference stays a reference.
    """
    return _Expander(named).walk(schema, namespace)


class _Expander:
    def __init__(self, named: Mapping[str, Any]) -> None:
        self.named = named
        self.defined: set[str] = set()

    def walk(self, schema: Any, namespace: str) -> Any:
        if isinstance(schema, str):
            if schema in _PRIMITIVES:
                return schema
            name = _resolve(schema, namespace)
            if name in self.named and name not in self.defined:
                definition = self.named[name]
                # defined in its own namespace, wherever it is expanded
                ns = name.rpartition(".")[0]
                short = name.rpartition(".")[2]
                return self.walk({**definition, "namespace": ns, "name": short}, "")
            return schema
        if isinstance(schema, list):
            return [self.walk(branch, namespace) for branch in schema]
        if not isinstance(schema, dict):
            return schema
        if _is_named(schema):
            name = full_name(schema, namespace)
            self.defined.add(name)
            inner_ns = name.rpartition(".")[0]
            out = dict(schema)
            if "fields" in schema:
                out["fields"] = [
                    {**f, "type": self.walk(f["type"], inner_ns)} for f in schema["fields"]
                ]
            return out
        out = dict(schema)
        for key in ("items", "values"):
            if key in schema:
                out[key] = self.walk(schema[key], namespace)
        kind = schema.get("type")
        if isinstance(kind, dict | list) or (isinstance(kind, str) and kind not in _KEYWORDS):
            out["type"] = self.walk(kind, namespace)
        return out


def extract(
    schema: Any, wanted: Callable[[str], bool], namespace: str = ""
) -> tuple[Any, dict[str, Any]]:
    """Pull every named type whose full name is ``wanted`` out of ``schema``.

    Returns ``schema`` with those definitions replaced by their full names, and the
    definitions (with an explicit namespace, themselves extracted likewise) by full name.
    The top-level type itself is never extracted.
    """
    found: dict[str, Any] = {}

    def walk(node: Any, ns: str, top: bool) -> Any:
        if isinstance(node, list):
            return [walk(branch, ns, False) for branch in node]
        if not isinstance(node, dict):
            return node
        if _is_named(node):
            name = full_name(node, ns)
            inner_ns = name.rpartition(".")[0]
            out = dict(node)
            if "fields" in node:
                out["fields"] = [
                    {**f, "type": walk(f["type"], inner_ns, False)} for f in node["fields"]
                ]
            if top or not wanted(name):
                return out
            out["name"] = name.rpartition(".")[2]
            out["namespace"] = inner_ns
            found[name] = {"type": out.pop("type"), "name": out.pop("name"), **out}
            return name
        out = dict(node)
        for key in ("items", "values"):
            if key in node:
                out[key] = walk(node[key], ns, False)
        if isinstance(node.get("type"), dict | list):
            out["type"] = walk(node["type"], ns, False)
        return out

    return walk(schema, namespace, True), found


def defined_names(schema: Any, namespace: str = "") -> list[str]:
    """Full names of the named types defined in ``schema``, in definition order."""
    out: list[str] = []

    def walk(node: Any, ns: str) -> None:
        if isinstance(node, list):
            for branch in node:
                walk(branch, ns)
        elif isinstance(node, dict):
            if _is_named(node):
                name = full_name(node, ns)
                out.append(name)
                for f in node.get("fields", ()):
                    walk(f["type"], name.rpartition(".")[0])
                return
            for key in ("items", "values", "type"):
                if isinstance(node.get(key), dict | list):
                    walk(node[key], ns)

    walk(schema, namespace)
    return out


def referenced_names(schema: Any, namespace: str = "") -> list[str]:
    """Full names referenced in ``schema`` but not defined in it, in first-use order."""
    defined = set(defined_names(schema, namespace))
    out: list[str] = []

    def walk(node: Any, ns: str) -> None:
        if isinstance(node, str):
            if node not in _PRIMITIVES:
                name = _resolve(node, ns)
                if name not in defined and name not in out:
                    out.append(name)
            return
        for child, child_ns in _inner_types(node, ns):
            walk(child, child_ns)

    walk(schema, namespace)
    return out


def _inner_types(node: Any, ns: str) -> list[tuple[Any, str]]:
    """The types directly inside ``node`` (a union's branches, a record's field types, an
    array's items ...), each with the namespace a name in it is resolved in."""
    if isinstance(node, list):
        return [(branch, ns) for branch in node]
    if not isinstance(node, dict):
        return []
    if _is_named(node):
        inner = full_name(node, ns).rpartition(".")[0]
        return [(f["type"], inner) for f in node.get("fields", ())]
    found = [(node[key], ns) for key in ("items", "values") if key in node]
    kind = node.get("type")
    if isinstance(kind, dict | list) or (isinstance(kind, str) and kind not in _KEYWORDS):
        found.append((kind, ns))
    return found
