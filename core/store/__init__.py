"""SQLite storage: the contract between the engine, the viewer and other processes."""

from core.store.bulk import FinishedTrajectory
from core.store.schema import SCHEMA_VERSION
from core.store.store import Store, StoreError, TrajectoryOutcome, effective_status

__all__ = ["SCHEMA_VERSION", "FinishedTrajectory", "Store", "StoreError", "TrajectoryOutcome", "effective_status"]
