"""Avro schemas of an app's tasks: derived from Python types (:mod:`.types`), named-type
references (:mod:`.refs`) and compatibility by Avro's resolution rules (:mod:`.compat`)."""
