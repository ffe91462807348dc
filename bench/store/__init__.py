"""Store: run trackers (MLflow, JSON lines), the tag and metric schema, and cell states."""
