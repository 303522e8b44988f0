"""Operations over an app's topics: dead letters and the DLQ, the result store (:mod:`.store`,
its SQLite file in :mod:`.storedb`), replay, status and offset resets. Used by the CLI and by
tests; imports the app, never the worker."""
