"""Development helpers: the local brokers — embedded Tansu (:mod:`.broker`) and Apache Kafka
(:mod:`.kafka`, its jars in :mod:`.jars`) — on one broker-process base, and worker
subprocesses driven from Python (:mod:`.processes`, used by the demo, the benchmark and tests), and
test topics created and waited for until led (:mod:`.topics`, behind ``streamtasks.testing``)."""
