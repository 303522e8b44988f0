"""An app whose import takes a while, for the stop-while-starting test: it says when loading
began (the file named by ``SLOW_APP_MARKER``) and then sleeps ``SLOW_APP_SECONDS``."""

from __future__ import annotations

import os
import pathlib
import time

from streamtasks import App

pathlib.Path(os.environ["SLOW_APP_MARKER"]).write_text("loading\n")
time.sleep(float(os.environ.get("SLOW_APP_SECONDS", "2")))

app = App("slow", bootstrap_servers="127.0.0.1:9")


@app.task
def noop() -> None:
    return None
