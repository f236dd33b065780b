"""What the bridge tells operators: the JSON log, Prometheus metrics, the audit trail."""
