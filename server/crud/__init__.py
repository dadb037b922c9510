"""Every database read and write the API makes, one module per concern:

- :mod:`~server.crud.state`: the run state machine (one transition table, one function that applies
  it) and the fencing of worker writes;
- :mod:`~server.crud.runs`: creating, listing, cancelling, deleting and cloning runs, and the worker
  protocol (claim, heartbeat, finish, release, expired leases);
- :mod:`~server.crud.ingest`: the snapshots, evals and log lines workers post;
- :mod:`~server.crud.history`: reading them back (bucketed history, evals, logs);
- :mod:`~server.crud.completions`: the sampled completions workers post, stored bounded, read by step;
- :mod:`~server.crud.events`: the event stream's cursor and reads.

Routes call ``crud.<function>``; the names below are the package's API.
"""

from server.crud.completions import add_completions, list_completions
from server.crud.events import EventCursor, read_events, start_cursor
from server.crud.history import final_tests, list_evals, list_logs, series_export, snapshot_export, snapshot_series
from server.crud.ingest import add_evals, add_logs, add_snapshots
from server.crud.runs import (
    TRUST_REMOTE_CODE_REFUSED,
    cancel_run,
    claim_run,
    clone_run,
    create_run,
    delete_run,
    finish_run,
    fits,
    heartbeat,
    list_runs,
    list_workers,
    merge_overrides,
    reap_expired,
    release_run,
)
from server.crud.state import TRANSITIONS, Fence, get_run, move

__all__ = [
    "TRANSITIONS", "TRUST_REMOTE_CODE_REFUSED", "EventCursor", "Fence", "add_evals", "add_logs", "add_snapshots",
    "add_completions", "list_completions",
    "cancel_run", "claim_run", "final_tests", "clone_run", "create_run", "delete_run", "finish_run", "fits", "get_run",
    "heartbeat", "list_evals", "list_logs", "list_runs", "list_workers", "merge_overrides", "move",
    "read_events", "reap_expired", "release_run", "series_export", "snapshot_export", "snapshot_series", "start_cursor",
]
