"""Schema compatibility by Avro's schema-resolution rules, with messages that name the task,
the field and the rule broken.

The question is always "can a reader with schema R read data written with schema W?"
(Avro specification, "Schema Resolution"). The modes say which way round it is asked:

* ``BACKWARD`` (default): the new schema reads data written with the last known one: events
  queued before a deploy still run. Also flags a field that *lost* its default: older events
  than the last export may lack that field (the default was how they were read).
* ``FORWARD``: the last known schema reads data written with the new one: workers not yet
  upgraded can run events sent by upgraded producers (a rolling deploy).
* ``FULL``: both. ``BACKWARD_TRANSITIVE``: BACKWARD against every known version.

Pure functions over JSON schemas (references expanded); no I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Compat", "Problem", "Subject", "check", "resolution_problems"]

_PRIMITIVES = frozenset(("null", "boolean", "int", "long", "float", "double", "bytes", "string"))
#: writer type -> reader types it is promoted to (besides itself)
_PROMOTIONS: dict[str, frozenset[str]] = {
    "int": frozenset(("long", "float", "double")),
    "long": frozenset(("float", "double")),
    "float": frozenset(("double",)),
    "string": frozenset(("bytes",)),
    "bytes": frozenset(("string",)),
}


class Compat(enum.StrEnum):
    BACKWARD = "BACKWARD"
    FORWARD = "FORWARD"
    FULL = "FULL"
    BACKWARD_TRANSITIVE = "BACKWARD_TRANSITIVE"


@dataclass(frozen=True)
class Subject:
    """One schema to compare: its full name, kind (as in the export index) and task."""

    name: str
    kind: str
    schema: Any  # self-contained (references expanded)
    task: str | None = None


@dataclass(frozen=True)
class Problem:
    subject: str
    task: str | None
    field: str | None
    rule: str
    message: str

    def to_json(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "task": self.task,
            "field": self.field,
            "rule": self.rule,
            "message": self.message,
        }


@dataclass(frozen=True)
class _Issue:
    """One resolution failure, phrased neutrally (the caller knows which side is new)."""

    path: str  # dotted field path, "" for the top level
    rule: str
    reader: str  # the reader's side of it (a type, a symbol list...)
    writer: str


# -- resolution ---------------------------------------------------------------------------


class _Names:
    """The named types a schema defines, by full name (to follow references)."""

    def __init__(self, schema: Any) -> None:
        self.by_name: dict[str, dict[str, Any]] = {}
        self._collect(schema, "")

    def _collect(self, node: Any, ns: str) -> None:
        if isinstance(node, list):
            for branch in node:
                self._collect(branch, ns)
        elif isinstance(node, dict):
            kind = node.get("type")
            if kind in ("record", "error", "enum", "fixed") and "name" in node:
                name = _full(node, ns)
                self.by_name.setdefault(name, {**node, "name": name})
                for f in node.get("fields", ()):
                    self._collect(f["type"], name.rpartition(".")[0])
                return
            for key in ("items", "values", "type"):
                if isinstance(node.get(key), dict | list):
                    self._collect(node[key], ns)

    def resolve(self, node: Any, ns: str) -> Any:
        """``node`` with a name reference replaced by its definition (full name)."""
        if isinstance(node, str) and node not in _PRIMITIVES:
            full = node if "." in node or not ns else f"{ns}.{node}"
            return self.by_name.get(full, self.by_name.get(node, node))
        if isinstance(node, dict):
            kind = node.get("type")
            if isinstance(kind, str) and kind in _PRIMITIVES:
                return kind  # a logical type reads as its underlying type
            if kind in ("record", "error", "enum", "fixed"):
                return {**node, "name": _full(node, ns)}
            if isinstance(kind, str) and kind not in ("array", "map"):
                return self.resolve(kind, ns)
        return node


def _full(node: Mapping[str, Any], ns: str) -> str:
    name = str(node["name"])
    if "." in name:
        return name
    space = node.get("namespace", ns)
    return f"{space}.{name}" if space else name


def _kind(node: Any) -> str:
    if isinstance(node, str):
        return node
    if isinstance(node, list):
        return "union"
    return str(node["type"])


def _show(node: Any) -> str:
    kind = _kind(node)
    if kind == "union":
        return "union [" + ", ".join(_show(b) for b in node) + "]"
    if kind in ("record", "error", "enum", "fixed"):
        return f"{kind} {str(node['name']).rpartition('.')[2]}"
    if kind == "array":
        return f"array<{_show(node['items'])}>"
    if kind == "map":
        return f"map<{_show(node['values'])}>"
    return kind


class _Resolver:
    def __init__(self, writer: Any, reader: Any) -> None:
        self.wnames = _Names(writer)
        self.rnames = _Names(reader)
        self.issues: list[_Issue] = []
        self._active: set[tuple[str, str]] = set()

    def check(self, w: Any, r: Any, path: str, wns: str = "", rns: str = "") -> None:
        w = self.wnames.resolve(w, wns)
        r = self.rnames.resolve(r, rns)
        wk, rk = _kind(w), _kind(r)
        if wk == "union" or rk == "union":
            self._union(w, r, wk == "union", rk == "union", path, wns, rns)
        elif wk in _PRIMITIVES or rk in _PRIMITIVES:
            if wk != rk and rk not in _PROMOTIONS.get(wk, ()):
                self._issue(path, "type-changed", r, w)
        elif wk != rk:
            self._issue(path, "type-changed", r, w)
        else:
            self._same_kind(w, r, wk, path, wns, rns)

    def _union(
        self, w: Any, r: Any, w_union: bool, r_union: bool, path: str, wns: str, rns: str
    ) -> None:
        """A writer union resolves branch by branch; a writer type read as a reader union
        resolves to the branch it matches."""
        if w_union:
            if not r_union and any(self._match(b, [r], wns, rns) is None for b in w):
                self._issue(path, "type-changed", r, w)
                return
            for branch in w:
                self.check(branch, r, path, wns, rns)
            return
        match = self._match(w, r, wns, rns)
        if match is None:
            self._issue(path, "type-changed", r, w)
        else:
            self.check(w, match, path, wns, rns)

    def _same_kind(self, w: Any, r: Any, kind: str, path: str, wns: str, rns: str) -> None:
        """Two complex types of one kind (array, map, enum, fixed, record)."""
        if kind == "array":
            self.check(w["items"], r["items"], path, wns, rns)
        elif kind == "map":
            self.check(w["values"], r["values"], path, wns, rns)
        elif kind == "enum":
            if not self._same_name(w, r, path):
                return
            gone = [s for s in w["symbols"] if s not in r["symbols"]]
            if gone and "default" not in r:
                self.issues.append(_Issue(path, "enum-symbols", ", ".join(gone), _show(r)))
        elif kind == "fixed":
            if self._same_name(w, r, path) and w.get("size") != r.get("size"):
                self._issue(path, "type-changed", r, w)
        elif kind in ("record", "error") and self._same_name(w, r, path):
            self._record(w, r, path)

    def _same_name(self, w: Mapping[str, Any], r: Mapping[str, Any], path: str) -> bool:
        wn, rn = str(w["name"]), str(r["name"])
        aliases = {str(a) for a in r.get("aliases", ())}
        if wn == rn or wn in aliases or wn.rpartition(".")[2] in aliases:
            return True
        self.issues.append(_Issue(path, "name-changed", rn, wn))
        return False

    def _record(self, w: Mapping[str, Any], r: Mapping[str, Any], path: str) -> None:
        key = (str(w["name"]), str(r["name"]))
        if key in self._active:  # a recursive type: already being compared
            return
        self._active.add(key)
        wns, rns = str(w["name"]).rpartition(".")[0], str(r["name"]).rpartition(".")[0]
        wfields = {f["name"]: f for f in w.get("fields", ())}
        for rf in r.get("fields", ()):
            here = f"{path}.{rf['name']}" if path else str(rf["name"])
            names = [rf["name"], *rf.get("aliases", ())]
            wf = next((wfields[n] for n in names if n in wfields), None)
            if wf is None:
                if "default" not in rf:
                    self.issues.append(_Issue(here, "missing-without-default", "", ""))
                continue
            if "default" in wf and "default" not in rf:
                self.issues.append(_Issue(here, "default-removed", "", ""))
            self.check(wf["type"], rf["type"], here, wns, rns)
        self._active.discard(key)

    def _match(self, w: Any, union: list[Any], wns: str, rns: str) -> Any:
        """The reader branch a writer type resolves to: an exact kind/name first, then a
        promotion (as the specification orders it)."""
        wk = _kind(w)
        branches = [self.rnames.resolve(b, rns) for b in union]
        for b in branches:
            bk = _kind(b)
            if bk == wk and (
                bk not in ("record", "error", "enum", "fixed") or b["name"] == w["name"]
            ):
                return b
        for b in branches:
            bk = _kind(b)
            named = bk in ("record", "error", "enum", "fixed") and bk == wk
            if named and str(w["name"]) in {str(a) for a in b.get("aliases", ())}:
                return b
            if bk in _PROMOTIONS.get(wk, ()):
                return b
        return None

    def _issue(self, path: str, rule: str, r: Any, w: Any) -> None:
        self.issues.append(_Issue(path, rule, _show(r), _show(w)))


def resolution_problems(writer: Any, reader: Any) -> list[_Issue]:
    """Why ``reader`` cannot read data written with ``writer`` (empty: it can)."""
    resolver = _Resolver(writer, reader)
    resolver.check(writer, reader, "")
    return resolver.issues


# -- messages -------------------------------------------------------------------------------


def _who(subject: Subject) -> str:
    if subject.task is None:
        return subject.name
    return {
        "task-args": f"task {subject.task}",
        "task-args-partial": f"task {subject.task} (arguments as a chain step)",
        "task-result": f"task {subject.task} (result)",
    }.get(subject.kind, f"task {subject.task}")


def _what(subject: Subject) -> str:
    return "results stored" if subject.kind == "task-result" else "events queued"


def _phrase(issue: _Issue, subject: Subject, reader_is_new: bool) -> tuple[str, str]:
    """(rule name, message) for one issue."""
    where = f"field `{issue.path}`" if issue.path else "the record"
    if reader_is_new:
        then = f"{_what(subject)} before cannot be read"
        old, new = issue.writer, issue.reader
    else:
        then = "readers not yet upgraded cannot read what the new version writes"
        old, new = issue.reader, issue.writer
    if issue.rule == "missing-without-default":
        if reader_is_new:
            return "field-added-without-default", f"{where} added without a default — {then}"
        return "field-removed-without-default", (
            f"{where} removed, and the old schema has no default for it — {then}"
        )
    if issue.rule == "default-removed":
        return "default-removed", f"{where} removed its default — {then}"
    if issue.rule == "enum-symbols":
        verb = "removed from" if reader_is_new else "added to"
        return "enum-symbol-removed" if reader_is_new else "enum-symbol-added", (
            f"{where}: symbol {issue.reader} {verb} {issue.writer}, which has no default — {then}"
        )
    if issue.rule == "name-changed":
        return "name-changed", f"{where}: type renamed from {old} to {new} (no alias) — {then}"
    return "type-changed", f"{where} changed type from {old} to {new} — {then}"


def _compare(
    current: Subject, previous: Subject, reader_is_new: bool, seen: set[tuple[object, ...]]
) -> list[Problem]:
    if reader_is_new:
        issues = resolution_problems(previous.schema, current.schema)
    else:
        issues = resolution_problems(current.schema, previous.schema)
        issues = [i for i in issues if i.rule != "default-removed"]
    # a chain step's record is the argument record without its first field: the same
    # problem there is reported once, for the task's arguments
    record = "result" if current.kind == "task-result" else "args"
    out: list[Problem] = []
    for issue in issues:
        key = (current.task or current.name, record, issue.path, issue.rule, reader_is_new)
        if key in seen:
            continue
        seen.add(key)
        rule, text = _phrase(issue, current, reader_is_new)
        message = f"{_who(current)}: {text}"
        out.append(Problem(current.name, current.task, issue.path or None, rule, message))
    return out


def check(
    current: Iterable[Subject],
    versions: Sequence[Mapping[str, Subject]],
    compat: Compat = Compat.BACKWARD,
) -> list[Problem]:
    """Problems of ``current`` against the known ``versions`` (oldest first) under ``compat``.

    Non-transitive modes compare against the latest version of each subject; a subject in a
    version but no longer current (a task removed) is a problem too: events queued for it
    would find no task.
    """
    now = {s.name: s for s in current}
    problems: list[Problem] = []
    seen: set[tuple[object, ...]] = set()
    if not versions:
        return problems
    against = list(versions) if compat is Compat.BACKWARD_TRANSITIVE else [_latest(versions)]
    directions = {
        Compat.BACKWARD: (True,),
        Compat.BACKWARD_TRANSITIVE: (True,),
        Compat.FORWARD: (False,),
        Compat.FULL: (True, False),
    }[compat]
    for version in against:
        for name, old in sorted(version.items()):
            if old.kind == "shared":
                continue  # checked where it is used, so the message names the task
            new = now.get(name)
            if new is None:
                message = (
                    f"{_who(old)}: removed — {_what(old)} before would find no task to run them"
                    if old.task is not None and old.kind == "task-args"
                    else None
                )
                if message is not None and (name, "removed") not in seen:
                    seen.add((name, "removed"))
                    problems.append(Problem(name, old.task, None, "subject-removed", message))
                continue
            for reader_is_new in directions:
                problems.extend(_compare(new, old, reader_is_new, seen))
    return problems


def _latest(versions: Sequence[Mapping[str, Subject]]) -> dict[str, Subject]:
    out: dict[str, Subject] = {}
    for version in versions:
        out.update(version)
    return out
