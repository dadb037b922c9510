"""Run server: FastAPI + SQLModel. Stores runs, hands them to workers, streams snapshots."""
