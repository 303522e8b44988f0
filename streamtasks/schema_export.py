"""The app's Avro contract as files: one ``.avsc`` per subject, plus ``index.json``.

A *subject* is one named Avro type, identified by its full name (also the file name,
``<full name>.avsc``, the convention fastavro's ``load_schema`` resolves references by, and the
Schema Registry subject under the RecordNameStrategy). The subjects of an app are:

* ``shared``: named types used by several others (``streamtasks.TaskError``, the records and
  enums derived from your dataclasses and Enums in ``streamtasks.types``);
* ``builtin``: the envelope, result, event and workflow records shipped in ``schemas/``;
* ``task-args`` / ``task-args-partial`` / ``task-result``: each task's argument record, the
  same record without its first parameter (chain steps), and its return value record.

Every other file refers to a shared type by its full name, so the whole set loads into one
Avro registry (no "duplicate type name"). ``index.json`` lists the subjects in load order
(each after what it refers to) with kind, task, queue and the CRC-64-AVRO fingerprint of the
canonical form of its expanded schema: the 8 bytes after ``C3 01`` in a single-object frame.

Invariants: output is a pure function of the app (sorted, fixed JSON layout), so exporting
twice gives identical files; expanding a file's references gives exactly the schema the app
encodes with (same fingerprint).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streamtasks.errors import SchemaError
from streamtasks.wire.codec import SHARED_TYPE_FILES, Codec, load_builtin_schema
from streamtasks.wire.schema import refs
from streamtasks.wire.schema.adapters import TYPES_NAMESPACE
from streamtasks.wire.schema.compat import Subject
from streamtasks.wire.schema.signature import return_adapter

if TYPE_CHECKING:
    from streamtasks.app import App

__all__ = [
    "BUILTIN_FILES",
    "INDEX_FILE",
    "ExportedSchema",
    "collect",
    "current_subjects",
    "load_history",
    "read_export",
    "render",
    "stored_subjects",
    "write_export",
]

INDEX_FILE = "index.json"
INDEX_FORMAT = "streamtasks-schemas/1"

#: the shipped contracts exported as builtin subjects (older envelope versions are history)
BUILTIN_FILES = (
    "envelope.avsc",
    "result.avsc",
    "event.avsc",
    "event_batch.avsc",
    "heartbeat.avsc",
    "signature.avsc",
    "chord_join.avsc",
    "chord_member.avsc",
    "scheduler_state.avsc",
)

_KIND_ORDER = {"shared": 0, "builtin": 1, "task-args": 2, "task-args-partial": 3, "task-result": 4}


@dataclass(frozen=True)
class ExportedSchema:
    """One subject: its schema as written (shared types by name) and its identity."""

    name: str
    kind: str
    schema: dict[str, Any]
    references: tuple[str, ...]
    fingerprint: str  # hex of the 8 little-endian bytes of a single-object frame header
    task: str | None = None
    queue: str | None = None

    @property
    def filename(self) -> str:
        return f"{self.name}.avsc"

    def index_entry(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"name": self.name, "file": self.filename, "kind": self.kind}
        if self.task is not None:
            entry["task"] = self.task
            entry["queue"] = self.queue
        entry["fingerprint"] = self.fingerprint
        entry["references"] = list(self.references)
        return entry


def _is_shared(name: str) -> bool:
    return name in SHARED_TYPE_FILES or name.startswith(TYPES_NAMESPACE + ".")


def _fingerprint(expanded: Any) -> str:
    return Codec().register(expanded).fingerprint.hex()


def _doc_line(text: str | None) -> str:
    return (text or "").strip().split("\n\n")[0].replace("\n", " ").strip()


def _task_subjects(app: App) -> list[tuple[str, dict[str, Any], str, str]]:
    """(kind, full schema, task, queue) of every task's records."""
    out: list[tuple[str, dict[str, Any], str, str]] = []
    for name in sorted(app.tasks):
        task = app.tasks[name]
        summary = _doc_line(task.func.__doc__)
        args = dict(task.signature.record_schema)
        args["doc"] = f"Arguments of task {name} (queue {task.queue})." + (
            f" {summary}" if summary else ""
        )
        out.append(("task-args", _with_doc_first(args), name, task.queue))
        if task.partial_schema is not None:
            partial = dict(task.signature.partial_schema())
            partial["doc"] = (
                f"Arguments of task {name} but the first, which the previous chain step's "
                "result supplies."
            )
            out.append(("task-args-partial", _with_doc_first(partial), name, task.queue))
        result, _ = return_adapter(task.func, task_name=name)
        result["doc"] = f"Return value of task {name}, in the field value."
        out.append(("task-result", _with_doc_first(result), name, task.queue))
    return out


def _with_doc_first(schema: dict[str, Any]) -> dict[str, Any]:
    order = ("type", "name", "namespace", "doc")
    return {
        **{k: schema[k] for k in order if k in schema},
        **{k: v for k, v in schema.items() if k not in order},
    }


def collect(app: App) -> list[ExportedSchema]:
    """Every subject of ``app``, in load order (each after the subjects it refers to)."""
    shared: dict[str, dict[str, Any]] = {
        name: load_builtin_schema(file, expand=False) for name, file in SHARED_TYPE_FILES.items()
    }
    entries: list[tuple[str, dict[str, Any], str | None, str | None]] = []
    for file in BUILTIN_FILES:
        raw = load_builtin_schema(file, expand=False)
        written, found = refs.extract(raw, _is_shared)
        _merge(shared, found)
        entries.append(("builtin", written, None, None))
    for kind, full, task, queue in _task_subjects(app):
        written, found = refs.extract(full, _is_shared)
        _merge(shared, found)
        entries.append((kind, written, task, queue))
    entries.extend(("shared", schema, None, None) for schema in shared.values())
    subjects = [
        _subject(kind, schema, task, queue, shared) for kind, schema, task, queue in entries
    ]
    return _load_order(subjects)


def _merge(shared: dict[str, dict[str, Any]], found: Mapping[str, dict[str, Any]]) -> None:
    for name, definition in found.items():
        known = shared.setdefault(name, definition)
        if known != definition:
            raise SchemaError(f"named type {name} has two different definitions in this app")


def _subject(
    kind: str,
    schema: dict[str, Any],
    task: str | None,
    queue: str | None,
    shared: Mapping[str, dict[str, Any]],
) -> ExportedSchema:
    name = refs.full_name(schema, "")
    others = {k: v for k, v in shared.items() if k != name}
    expanded = refs.expand(schema, others)
    return ExportedSchema(
        name=name,
        kind=kind,
        schema=schema,
        references=tuple(refs.referenced_names(schema)),
        fingerprint=_fingerprint(expanded),
        task=task,
        queue=queue,
    )


def _sort_key(s: ExportedSchema) -> tuple[int, str, int, str]:
    """Shared types, then the builtins, then per task (by name) its args, partial, result."""
    group = min(_KIND_ORDER[s.kind], 2)
    return (group, s.task or "", _KIND_ORDER[s.kind], s.name)


def _load_order(subjects: Iterable[ExportedSchema]) -> list[ExportedSchema]:
    by_name: dict[str, ExportedSchema] = {}
    for s in sorted(subjects, key=_sort_key):
        by_name.setdefault(s.name, s)
    ordered: list[ExportedSchema] = []
    placed: set[str] = set()

    def place(s: ExportedSchema) -> None:
        if s.name in placed:
            return
        placed.add(s.name)
        for ref in s.references:
            if ref in by_name:
                place(by_name[ref])
        ordered.append(s)

    for s in by_name.values():
        place(s)
    return ordered


def render(subjects: list[ExportedSchema]) -> dict[str, str]:
    """File name -> file text for the subjects and their index."""
    files = {
        s.filename: json.dumps(s.schema, indent=2, ensure_ascii=False) + "\n" for s in subjects
    }
    index = {
        "format": INDEX_FORMAT,
        "subject_naming": "RecordNameStrategy: one subject per Avro full name (= file name)",
        "fingerprint": "CRC-64-AVRO of the Parsing Canonical Form, 8 bytes little endian, hex",
        "schemas": [s.index_entry() for s in subjects],
    }
    files[INDEX_FILE] = _dump(index)
    return files


def _dump(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def write_export(subjects: list[ExportedSchema], out: Path) -> list[str]:
    """Write the files into ``out``; returns the names of files changed, added or removed.

    Files an earlier export listed in its index but this one no longer has are removed; no
    other file in ``out`` is touched.
    """
    out.mkdir(parents=True, exist_ok=True)
    files = render(subjects)
    changed: list[str] = []
    index_path = out / INDEX_FILE
    if index_path.exists():
        try:
            old = json.loads(index_path.read_text("utf-8"))
            stale = [e["file"] for e in old.get("schemas", ()) if e["file"] not in files]
        except (ValueError, KeyError, TypeError):
            stale = []
        for file in stale:
            path = out / Path(file).name
            if path.exists():
                path.unlink()
                changed.append(file)
    for file, text in files.items():
        path = out / file
        if not path.exists() or path.read_text("utf-8") != text:
            path.write_text(text, "utf-8")
            changed.append(file)
    return sorted(changed)


def current_subjects(app: App) -> list[Subject]:
    """The app's subjects with references expanded (self-contained), for :mod:`compat`."""
    subjects = collect(app)
    shared = {s.name: s.schema for s in subjects if s.kind == "shared"}
    out = []
    for s in subjects:
        others = {k: v for k, v in shared.items() if k != s.name}
        out.append(Subject(s.name, s.kind, refs.expand(s.schema, others), s.task))
    return out


def stored_subjects(directory: Path) -> dict[str, Subject]:
    """The subjects of an export directory, for :mod:`compat`."""
    return {
        name: Subject(name, s.kind, s.schema, s.task) for name, s in read_export(directory).items()
    }


def load_history(app: App, *directories: Path | str) -> int:
    """Register the schemas of earlier exports as older versions the app reads.

    Without a schema registry a worker knows only the fingerprints of its current schemas, so
    an event written with an earlier signature of a task would be an unknown schema. Call this
    after the tasks are declared (e.g. at the end of the app module) with the committed export
    of the previous release: its frames then decode by Avro schema resolution into the current
    records (``schemas check`` tells beforehand whether they can). Returns how many older
    versions were registered; one that cannot be resolved raises :class:`SchemaError`.
    """
    current = {}
    for task in app.tasks.values():
        current[task.args_schema.name] = task.args_schema
        current[task.result_schema.name] = task.result_schema
        if task.partial_schema is not None:
            current[task.partial_schema.name] = task.partial_schema
    current[app.envelope_schema.name] = app.envelope_schema
    current[app.result_schema.name] = app.result_schema
    count = 0
    for directory in directories:
        for name, stored in read_export(Path(directory)).items():
            now = current.get(name)
            if now is None or stored.fingerprint == now.fingerprint.hex():
                continue
            app.codec.register_old(stored.schema, now)
            count += 1
    return count


@dataclass(frozen=True)
class StoredSchema:
    """One subject read back from an export: its index entry and its expanded schema."""

    name: str
    kind: str
    schema: dict[str, Any]  # references expanded: self-contained
    task: str | None
    fingerprint: str


def read_export(directory: Path) -> dict[str, StoredSchema]:
    """The subjects of an export directory, by full name, with references expanded."""
    index_path = directory / INDEX_FILE
    try:
        index = json.loads(index_path.read_text("utf-8"))
        entries = list(index["schemas"])
    except FileNotFoundError:
        raise SchemaError(
            f"{index_path} not found: export the schemas first "
            "(streamtasks schemas export APP --out DIR)"
        ) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise SchemaError(f"{index_path}: not a streamtasks schema index ({exc})") from exc
    raw: dict[str, dict[str, Any]] = {}
    for entry in entries:
        path = directory / Path(entry["file"]).name
        try:
            raw[entry["name"]] = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise SchemaError(f"{path}: cannot read the schema ({exc})") from exc
    shared = {e["name"]: raw[e["name"]] for e in entries if e["kind"] == "shared"}
    out: dict[str, StoredSchema] = {}
    for entry in entries:
        name = entry["name"]
        others = {k: v for k, v in shared.items() if k != name}
        out[name] = StoredSchema(
            name=name,
            kind=entry["kind"],
            schema=refs.expand(raw[name], others),
            task=entry.get("task"),
            fingerprint=entry.get("fingerprint", ""),
        )
    return out
