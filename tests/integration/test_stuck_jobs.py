"""No stuck jobs: a job whose message died with its worker is sent again and finished, and
duplicate messages never run it twice (real workers, real Redis, real PostgreSQL).

Before: the reaper counted a message in kombu's ``unacked`` hash as present, and a SIGKILLed
worker's message stays there until the 6-hour visibility timeout: the job stayed ``queued``.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest

from tests.integration.training_queue import Deployment, deployment

pytestmark = pytest.mark.integration

REDIS_DB = 15
REAPER_INTERVAL_S = 1
RESEND_AFTER_S = 3


@pytest.fixture(scope="module")
def stuck(
    postgres_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    with deployment(
        postgres_url,
        redis_url,
        tmp_path_factory.mktemp("stuck-jobs"),
        redis_db=REDIS_DB,
        tenants=("t",),
        reaper_interval_s=str(REAPER_INTERVAL_S),
        resend_after_s=str(RESEND_AFTER_S),
    ) as d:
        yield d


def _held_unacknowledged(d: Deployment, job_id: str) -> bool:
    # a task message's headers carry its arguments in plain text (argsrepr)
    return any(job_id.encode() in raw for raw in d.broker.hvals("unacked"))


def test_a_job_whose_message_died_with_its_worker_is_sent_again_and_runs_once(
    stuck: Deployment,
) -> None:
    from app.tasks import TRAIN_TASK, send_task

    holder = stuck.worker()
    assert holder.children()
    for pid in holder.children():  # its pool can start nothing: the message stays held
        os.kill(pid, signal.SIGSTOP)
    job_id = stuck.submit("t")
    deadline = time.monotonic() + 30
    while not _held_unacknowledged(stuck, job_id) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _held_unacknowledged(stuck, job_id), stuck.logs()
    holder.kill_all()  # SIGKILL to the whole process group: the machine is lost
    killed = time.monotonic()
    assert stuck.job("t", job_id)["status"] == "queued"
    assert stuck.broker.llen("train") == 0 and _held_unacknowledged(stuck, job_id)

    # a new worker with the reaper (beat); the dead worker's message stays in `unacked`, and
    # duplicates of the job's message arrive too: the job must still run exactly once
    rescuer = stuck.worker(queues="train,maintenance", concurrency=2, beat=True)
    stuck.wait("t", [job_id], timeout=60, until={"running", "succeeded"})
    resumed = time.monotonic() - killed
    for _ in range(3):
        send_task(TRAIN_TASK, [job_id])
    done = stuck.wait("t", [job_id], timeout=120)[job_id]
    print(f"\njob of a killed worker running again {resumed:.1f}s after the kill")
    assert done["status"] == "succeeded", stuck.logs()
    assert done["attempt"] == 1
    assert stuck.events("t", job_id).count("started") == 1
    deadline = time.monotonic() + 60
    while stuck.broker.llen("train") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert stuck.broker.llen("train") == 0  # the duplicates were taken, and did nothing
    models = stuck.client.get("/v1/models", headers=stuck.headers["t"]).json()["data"]
    assert [m["job_id"] for m in models] == [job_id]
    assert stuck.events("t", job_id).count("started") == 1
    rescuer.stop()
