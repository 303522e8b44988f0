"""The demo: a realistic mixed workload run end to end on the embedded broker."""
