"""Development helpers: the embedded broker (:mod:`.broker`) and worker subprocesses driven
from Python (:mod:`.processes`, used by the demo, the benchmark and tests)."""
