"""The confluent-kafka boundary: client construction and admin calls (:mod:`.clients`) and
reading topics as a tool does (:mod:`.reader`)."""
