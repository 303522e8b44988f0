"""What is on the topics: the Avro codec, envelopes and result records, topic names, every
``st-*`` header (:mod:`.headers`), deterministic ids (:mod:`.ids`), typed chord and callback
records (:mod:`.records`), the schema registry framing, and (in :mod:`streamtasks.wire.schema`)
the Avro schemas derived from task signatures. Imports nothing above it (errors and config
only)."""
