"""Avro schemas of an app's tasks.

* :mod:`.adapters` — the :class:`~.adapters.TypeAdapter` base and the scalar adapters;
* :mod:`.composites` — optional, list, dict, enum and record adapters;
* :mod:`.derive` — adapters derived from Python type hints (and Avro defaults);
* :mod:`.signature` — a task function's argument and result records;
* :mod:`.plain` — call arguments from plain (JSON) data;
* :mod:`.refs` — named-type references; :mod:`.compat` — compatibility by Avro's resolution
  rules.
"""
