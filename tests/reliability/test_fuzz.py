"""Schema fuzzing: schemathesis generates requests for every operation in the server's
OpenAPI document, valid ones and deliberately invalid ones, and checks every response:
no 5xx, only documented status codes, bodies and headers that match the documented
schema, invalid input refused, token-protected operations refusing requests without the
token (schemathesis' ``ignored_auth`` probe).

Requests carry the right bearer token for their operation (worker or API token, read from
the operation's ``security`` in the schema), and most valid ones target runs that exist,
held by a worker whose id they use, so they get past auth and lookup into the handlers.
The app runs in-process (ASGI) with its lifespan (migrations) on a fresh database, on
SQLite and, when E2H_TEST_DATABASE_URL is set, on PostgreSQL. Hypothesis is derandomized:
the same requests every run. The one check left out is ``positive_data_acceptance``:
a RunConfig has cross-field rules (known task names, batch divisibility, scheduler
feasibility) that JSON schema cannot state, so schema-valid configs may rightly get 422.
"""

from __future__ import annotations

import collections
import contextlib
import time
from pathlib import Path

import hypothesis
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from server.core.config import Settings
from server.main import create_app
from tests.server.conftest import db_url, pg_admin  # noqa: F401  (fixtures: a fresh SQLite/PostgreSQL database)
from tests.server.helpers import WORKER, WORKER_TOKEN, snapshot

API_TOKEN = "fuzz-api-token"
API = {"Authorization": f"Bearer {API_TOKEN}"}
HOLDER = "fuzz-worker"
HELD = f"attempt=1&worker_id={HOLDER}"
EXAMPLES_PER_OPERATION_AND_MODE = 36
MIN_REQUESTS = 1000
# The most an event stream is read (an open run's stream never ends by itself).
STREAM_SECONDS = 3.0


def _seed(client: TestClient) -> list[int]:
    """Runs in every state, so generated ids can land on each kind: queued, running (held by
    HOLDER, with snapshots, evals and logs), succeeded and cancelled."""
    config = {"algorithm": {"max_steps": 1000}}
    ids = []
    for i in range(6):
        r = client.post("/runs", json={"config": config, "name": f"seed-{i}", "tags": ["seed"]}, headers=API)
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    for _ in range(3):
        r = client.post("/workers/claim", json={"worker_id": HOLDER}, headers=WORKER)
        assert r.status_code == 200, r.text
    held = {"worker_id": HOLDER, "attempt": 1}
    for step in range(3):
        r = client.post(f"/runs/{ids[0]}/snapshots", json=[snapshot(step)], params=held, headers=WORKER)
        assert r.status_code == 202, r.text
    r = client.post(f"/runs/{ids[0]}/evals", json={"step": 2, "results": {"overall": {"accuracy": 0.5}}},
                    params=held, headers=WORKER)
    assert r.status_code == 202, r.text
    assert client.post(f"/runs/{ids[0]}/logs", json={"lines": ["a", "b"]}, params=held, headers=WORKER).status_code
    r = client.post(f"/runs/{ids[1]}/finish", json={**held, "status": "succeeded"}, headers=WORKER)
    assert r.status_code == 200, r.text
    assert client.post(f"/runs/{ids[3]}/cancel", headers=API).status_code == 200
    return ids


@pytest.fixture
def fuzz_app(db_url: str, tmp_path: Path):  # noqa: F811  (db_url is the imported fixture)
    settings_ = Settings(database_url=db_url, data_dir=tmp_path, worker_token=WORKER_TOKEN, api_token=API_TOKEN,
                         lease_seconds=3600)
    app = create_app(settings_)
    # Entering the client runs the lifespan (migrations, engine); schemathesis then sends
    # its requests to the same app object.
    with TestClient(app) as client:
        yield app, _seed(client)


def _token(operation) -> dict[str, str]:
    schemes = {name for requirement in operation.definition.raw.get("security", []) for name in requirement}
    if "WorkerToken" in schemes:
        return WORKER
    if "ApiToken" in schemes:
        return API
    return {}


def _steer(case, pick: int, hold: bool, ids: list[int]) -> None:
    """Point a valid case at an existing run and its holder (random ids are mostly 404)."""
    if case.operation.path.endswith("/events"):
        # A stream stays open until its run finishes: a finished run (seeded 1 and 3) or none.
        case.path_parameters["run_id"] = [ids[1], ids[3]][pick % 2] if pick % 3 else 10**6
    elif "run_id" in (case.path_parameters or {}) and pick < len(ids):
        case.path_parameters["run_id"] = ids[pick]
    if not hold:
        return
    # Every seeded run is on its first attempt.
    if isinstance(case.body, dict) and "worker_id" in case.body:
        case.body["worker_id"] = HOLDER
        case.body["attempt"] = 1
    if case.query and "attempt" in case.query:
        case.query["worker_id"] = HOLDER
        case.query["attempt"] = 1


class Tally:
    def __init__(self) -> None:
        self.sent: collections.Counter[str] = collections.Counter()
        self.statuses: collections.Counter[int] = collections.Counter()
        self.failures: dict[tuple[str, str], str] = {}


def _fuzz_operation(operation, mode: GenerationMode, ids: list[int], tally: Tally) -> None:
    headers = _token(operation)
    # Valid cases: 3 in 4 go to a seeded run (ids[pick]); half use the holder's worker id.
    steering = st.tuples(st.integers(0, len(ids) * 4 // 3), st.booleans())

    @settings(
        max_examples=EXAMPLES_PER_OPERATION_AND_MODE,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode), steer=steering)
    def fuzz(case, steer) -> None:
        if mode is GenerationMode.POSITIVE:
            _steer(case, *steer, ids)
        tally.sent[operation.label] += 1
        try:
            response = case.call_and_validate(
                headers=headers, excluded_checks=[positive_data_acceptance], timeout=STREAM_SECONDS
            )
        except BaseException as exc:  # a failed check is a group of failures: keep going, report them all
            if isinstance(exc, KeyboardInterrupt):
                raise
            tally.failures.setdefault((operation.label, type(exc).__name__), str(exc)[:3000])
        else:
            tally.statuses[response.status_code] += 1

    with contextlib.suppress(hypothesis.errors.Unsatisfiable):  # nothing to make invalid (GET /healthz ...)
        fuzz()


def test_fuzz_every_operation_no_5xx_and_responses_match_the_schema(fuzz_app) -> None:
    app, ids = fuzz_app
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    tally = Tally()
    start = time.monotonic()
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _fuzz_operation(operation, mode, ids, tally)
    elapsed = time.monotonic() - start
    total = sum(tally.sent.values())
    print(f"fuzz-report: {total} requests over {len(operations)} operations in {elapsed:.1f}s; "
          f"status codes {dict(sorted(tally.statuses.items()))}")
    assert not tally.failures, "\n\n".join(f"{op} ({kind}):\n{text}" for (op, kind), text in tally.failures.items())
    assert total >= MIN_REQUESTS, tally.sent
    assert len(tally.sent) == len(operations), "an operation got no request"
    # Steering worked: handlers ran (2xx) and refused (404, 409) as well as validation did (422).
    codes = tally.statuses
    assert codes[200] and codes[201] and codes[202] and codes[404] and codes[409] and codes[422], codes


# Values the fuzzer found (or could find) breaking the database layer, checked on every
# backend: each must be a 422 naming the field, never a 500. NUL: PostgreSQL text cannot
# hold it. Out-of-range integers: PostgreSQL INTEGER is 32-bit, SQLite's 64-bit.
HOSTILE_REQUESTS = [
    ("POST", "/runs", {"json": {"name": "a\x00b"}}, API, "name"),
    ("POST", "/runs", {"json": {"tags": ["ok", "a\x00"]}}, API, "tags.1"),
    ("POST", "/runs", {"content": b'{"config": {"task": {"options": {"x": NaN}}}}'}, API, "config.task.options.x"),
    ("POST", "/runs", {"content": b'{"name": "\xff\xfe"}'}, API, ""),
    ("GET", "/runs?tag=a%00", {}, {}, "tag"),
    ("GET", "/runs?offset=100000000000000000000", {}, {}, "offset"),
    ("GET", f"/runs/{2**31}", {}, {}, "run_id"),
    ("GET", f"/runs/{2**64}", {}, {}, "run_id"),
    ("DELETE", f"/runs/{2**63}", {}, API, "run_id"),
    ("GET", "/runs/{id}/snapshots?after_step=" + str(2**63), {}, {}, "after_step"),
    ("GET", "/runs/{id}/logs?after=" + str(2**64), {}, {}, "after"),
    ("POST", "/workers/claim", {"json": {"worker_id": "w\x00"}}, WORKER, "worker_id"),
    ("POST", "/workers/claim", {"json": {"worker_id": "w", "labels": ["\x00"]}}, WORKER, "labels.0"),
    ("POST", "/runs/{id}/heartbeat", {"json": {"worker_id": HOLDER, "attempt": 1, "step": 2**31}}, WORKER, "step"),
    ("POST", "/runs/{id}/heartbeat", {"json": {"worker_id": HOLDER, "attempt": 1, "output_dir": "/a\x00"}}, WORKER,
     "output_dir"),
    ("POST", "/runs/{id}/snapshots?" + HELD, {"json": [snapshot(2**40)]}, WORKER, "0.step"),
    ("POST", "/runs/{id}/evals?" + HELD, {"json": {"step": 2**31, "results": {}}}, WORKER, "step"),
    ("POST", "/runs/{id}/evals?" + HELD, {"content": b'{"step": 1, "results": {"a": [Infinity]}}'},
     WORKER, "results.a.0"),
]


@pytest.mark.parametrize("method,path,kwargs,headers,field", HOSTILE_REQUESTS,
                         ids=[f"{m} {p.split('?')[0]} {f}" for m, p, _, _, f in HOSTILE_REQUESTS])
def test_hostile_values_are_422_naming_the_field(fuzz_app, method, path, kwargs, headers, field) -> None:
    app, ids = fuzz_app
    if "content" in kwargs:
        headers = {**headers, "Content-Type": "application/json"}
    with TestClient(app, raise_server_exceptions=False) as client:
        r = client.request(method, path.replace("{id}", str(ids[0])), headers=headers, **kwargs)
    assert r.status_code == 422, r.text
    assert any(e["field"] == field for e in r.json()["detail"]), r.text


def test_nul_in_log_lines_and_errors_is_kept_visibly(fuzz_app) -> None:
    # Text a training process printed is the worker's to forward, not the client's to fix:
    # NUL becomes U+FFFD instead of refusing the batch.
    app, ids = fuzz_app
    held = {"worker_id": HOLDER, "attempt": 1}
    with TestClient(app) as client:
        r = client.post(f"/runs/{ids[2]}/logs", json={"lines": ["a\x00b"]}, params=held, headers=WORKER)
        assert r.status_code == 202, r.text
        assert client.get(f"/runs/{ids[2]}/logs").json()["data"][-1]["line"] == "a\ufffdb"
        r = client.post(f"/runs/{ids[2]}/finish", json={**held, "status": "failed", "error": "x\x00"}, headers=WORKER)
        assert r.status_code == 200 and r.json()["error"] == "x\ufffd", r.text


def test_a_last_event_id_out_of_range_starts_a_fresh_stream(fuzz_app) -> None:
    app, ids = fuzz_app
    with TestClient(app) as client:
        r = client.get(f"/runs/{ids[1]}/events", headers={"Last-Event-ID": f"{2**70}.0.0"})
    assert r.status_code == 200 and "event: status" in r.text
