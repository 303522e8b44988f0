"""``streamtasks schemas export``: one .avsc per subject, shared types once, stable output,
loadable together by fastavro and by a non-Python Avro library (node ``avsc``)."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import fastavro
import fastavro.schema
import pytest
from typer.testing import CliRunner

from streamtasks.cli import cli
from streamtasks.schema_export import collect, read_export, write_export
from streamtasks.wire.codec import Codec, load_builtin_schema
from streamtasks.wire.envelope import ENVELOPE_SCHEMA, OLD_ENVELOPE_SCHEMAS, RESULT_SCHEMA
from tests.unit import schema_apps

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS_DIR = ROOT / "schemas"

#: fingerprints of the shipped contracts before TaskError moved into its own file: frames on
#: topics today carry these, so they must never change
PINNED = {
    "envelope.avsc": "3cd56e1cf40f95db",
    "envelope.v1.avsc": "0032eb19b423d832",
    "result.avsc": "f0ffbe86801df2ac",
    "chord_member.avsc": "d0fe6b92e90a2406",
    "chord_join.avsc": "f8d5ee0a9aa7182b",
    "signature.avsc": "763a0a5644d3c430",
    "scheduler_state.avsc": "d5be92c367f123c6",
}


@pytest.mark.parametrize("file", sorted(PINNED))
def test_shared_task_error_keeps_every_shipped_fingerprint(file: str) -> None:
    # Given a shipped contract that refers to streamtasks.TaskError by name
    # When it is loaded (references expanded) and registered
    known = Codec().register(load_builtin_schema(file))

    # Then its fingerprint is the one existing frames carry
    assert known.fingerprint.hex() == PINNED[file]


def test_shipped_schema_files_load_together_into_one_registry() -> None:
    # Given the .avsc files of schemas/, TaskError first
    others = sorted(p.name for p in SCHEMAS_DIR.glob("*.avsc") if p.name != "task_error.avsc")
    files = ["task_error.avsc", *others]
    named: dict[str, Any] = {}
    # When each is parsed into one shared registry, as written (references not expanded);
    # envelope.v1 is an older TaskEnvelope, so it gets a registry of its own
    for name in files:
        schema = json.loads((SCHEMAS_DIR / name).read_text())
        registry = dict(named) if name == "envelope.v1.avsc" else named
        fastavro.parse_schema(schema, named_schemas=registry)
    # Then no type was defined twice (fastavro would raise) and TaskError is defined once
    text = "".join((SCHEMAS_DIR / n).read_text() for n in files)
    assert text.count('"name": "TaskError"') == 1
    assert {"streamtasks.TaskError", "streamtasks.TaskEnvelope", "streamtasks.TaskEvent"} <= set(
        named
    )


def test_export_fingerprints_are_those_the_app_encodes_with(tmp_path: Path) -> None:
    # Given an app with tasks sharing a dataclass
    app = schema_apps.v1

    # When its schemas are exported and read back (references expanded)
    write_export(collect(app), tmp_path)
    stored = read_export(tmp_path)

    # Then every task record is there, with the fingerprint of the app's own schema
    for task in app.tasks.values():
        args = stored[f"streamtasks.tasks.{task.name.replace('.', '_')}_args"]
        assert args.fingerprint == task.args_schema.fingerprint.hex()
        assert Codec().register(args.schema).fingerprint == task.args_schema.fingerprint
        result = stored[f"streamtasks.tasks.{task.name.replace('.', '_')}_result"]
        assert Codec().register(result.schema).fingerprint == task.result_schema.fingerprint
    # And the builtins keep theirs
    assert stored["streamtasks.TaskEnvelope"].fingerprint == app.envelope_schema.fingerprint.hex()
    assert Codec().register(stored["streamtasks.TaskResult"].schema).canonical == (
        Codec().register(RESULT_SCHEMA).canonical
    )
    # And the shared dataclass is its own subject, referenced by both tasks
    address = "streamtasks.types.tests_unit_schema_apps_Address"
    assert stored[address].kind == "shared"
    index = json.loads((tmp_path / "index.json").read_text())
    users = [e["name"] for e in index["schemas"] if address in e["references"]]
    assert "streamtasks.tasks.shop_ship_args" in users
    assert "streamtasks.tasks.shop_charge_result" in users


def test_export_has_defaults_and_docs(tmp_path: Path) -> None:
    # When v1 is exported
    write_export(collect(schema_apps.v1), tmp_path)

    # Then the argument record keeps defaults and a doc from the task
    args = json.loads((tmp_path / "streamtasks.tasks.shop_charge_args.avsc").read_text())
    assert args["doc"].startswith("Arguments of task shop.charge (queue default). Charge a")
    fields = {f["name"]: f for f in args["fields"]}
    assert fields["currency"]["default"] == "EUR"
    ship = json.loads((tmp_path / "streamtasks.tasks.shop_ship_args.avsc").read_text())
    assert {f["name"]: f for f in ship["fields"]}["plan"]["default"] == "FREE"


def test_export_is_stable_and_removes_subjects_no_longer_exported(tmp_path: Path) -> None:
    # Given a first export of v1
    write_export(collect(schema_apps.v1), tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    (tmp_path / "README.md").write_text("not ours")

    # When it is exported again
    changed = write_export(collect(schema_apps.v1), tmp_path)

    # Then nothing changed, byte for byte
    assert changed == []
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name != "README.md"} == before

    # And when an app without shop.ship is exported into it, only ship's files go
    app = schema_apps._app()
    app.task(name="shop.charge")(schema_apps.charge.func)
    changed = write_export(collect(app), tmp_path)
    assert "streamtasks.tasks.shop_ship_args.avsc" in changed
    assert not (tmp_path / "streamtasks.tasks.shop_ship_args.avsc").exists()
    assert (tmp_path / "README.md").exists()


def test_every_exported_file_loads_with_fastavro_together_and_alone(tmp_path: Path) -> None:
    # Given an export
    write_export(collect(schema_apps.v1), tmp_path)
    index = json.loads((tmp_path / "index.json").read_text())

    # When all files are parsed, in index order, into one registry
    named: dict[str, Any] = {}
    for entry in index["schemas"]:
        schema = json.loads((tmp_path / entry["file"]).read_text())
        fastavro.parse_schema(schema, named_schemas=named)

    # Then every subject was defined exactly once (a duplicate would have raised)
    assert set(named) >= {e["name"] for e in index["schemas"]}
    # And fastavro's own loader resolves each file's references from the directory
    for entry in index["schemas"]:
        loaded = fastavro.schema.load_schema(tmp_path / entry["file"])
        assert loaded["name"] == entry["name"]


def test_cli_export_writes_the_files_and_lists_them(tmp_path: Path) -> None:
    # When the command runs
    result = CliRunner().invoke(
        cli, ["schemas", "export", "tests.unit.schema_apps:v1", "--out", str(tmp_path), "--json"]
    )

    # Then it succeeds and reports every subject, all written
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert {e["file"] for e in report["schemas"]} | {"index.json"} == set(report["changed"])
    assert (tmp_path / "streamtasks.TaskError.avsc").exists()


def test_old_envelope_still_resolves_into_the_current_one() -> None:
    # Given the current envelope and its older version, both referring to the shared TaskError
    codec = Codec()
    current = codec.register(ENVELOPE_SCHEMA)

    # Then the old version is still accepted for reading
    for old in OLD_ENVELOPE_SCHEMAS:
        assert codec.register_old(old, current).reads_as is current


# -- a non-Python Avro library ----------------------------------------------------------


def test_export_loads_into_one_avsc_registry_with_the_same_canonical_forms(
    tmp_path: Path, node_packages: Path
) -> None:
    # Given an export and the app's own canonical forms
    app = schema_apps.v1
    write_export(collect(app), tmp_path)
    stored = read_export(tmp_path)
    record = {"customer": "12345678-1234-5678-1234-567812345678", "amount": 250, "currency": "NOK"}
    job = {"subject": "streamtasks.tasks.shop_charge_args", "value": record}

    # When node's avsc loads every file into one registry and encodes a charge
    proc = subprocess.run(
        ["node", str(node_packages / "load_schemas.js"), str(tmp_path), json.dumps(job)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    # Then it loaded them all (a duplicate type name would have failed it)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert set(out["canonical"]) == set(stored)
    # And each canonical form is the one fastavro computes (so the fingerprints agree)
    for name, schema in stored.items():
        assert out["canonical"][name] == Codec().register(schema.schema).canonical, name
    # And the app decodes avsc's encoding, framed with the exported fingerprint
    task = app.tasks["shop.charge"]
    frame = b"\xc3\x01" + bytes.fromhex(stored[job["subject"]].fingerprint)
    frame += bytes.fromhex(out["encoded"])
    _, kwargs = task.decode_args(frame)
    assert kwargs["amount"] == 250
    assert kwargs["currency"] == "NOK"
    assert str(kwargs["customer"]) == record["customer"]


def test_load_history_lets_a_new_worker_read_events_of_the_previous_export(
    tmp_path: Path,
) -> None:
    from streamtasks.errors import UnknownSchemaError
    from streamtasks.schema_export import load_history

    # Given v1 exported, and a charge event written by v1 (single-object, no registry)
    write_export(collect(schema_apps.v1), tmp_path)
    old_frame = schema_apps.v1.tasks["shop.charge"].encode_args((uuid.UUID(int=7), 7), {})
    new_app = schema_apps._app()
    new_app.task(name="shop.charge")(schema_apps.v2_ok.tasks["shop.charge"].func)
    new_charge = new_app.tasks["shop.charge"]
    # (without the history, v2 does not know v1's fingerprint)
    with pytest.raises(UnknownSchemaError):
        new_charge.decode_args(old_frame)

    # When v2 loads the previous export as history
    registered = load_history(new_app, tmp_path)

    # Then the v1 event decodes into v2's arguments, the new parameter defaulted
    assert registered >= 1
    _, kwargs = new_charge.decode_args(old_frame)
    assert kwargs["amount"] == 7
    assert str(kwargs["on"]) == "2024-01-01"


def test_load_history_refuses_an_export_that_cannot_be_resolved(tmp_path: Path) -> None:
    from streamtasks.errors import SchemaError
    from streamtasks.schema_export import load_history

    write_export(collect(schema_apps.v1), tmp_path)
    broken = schema_apps._app()
    broken.task(name="shop.charge")(schema_apps.v2_broken.tasks["shop.charge"].func)

    with pytest.raises(SchemaError, match="shop_charge_args"):
        load_history(broken, tmp_path)
