from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import FileResponse

from app.deps import SessionDep, SettingsDep, StorageDep, TenantDep
from app.jobs import event_stream, reports, service
from app.jobs.reports import JobReport
from app.jobs.schemas import (
    JobCreate,
    JobEventList,
    JobEventRead,
    JobList,
    JobMetrics,
    JobRead,
    MetricPoint,
)
from app.links import link
from app.pagination import page

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


@router.post("", status_code=201, response_model=JobRead)
def create_job(
    body: JobCreate,
    response: Response,
    tenant: TenantDep,
    session: SessionDep,
    settings: SettingsDep,
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=200)] = None,
) -> JobRead:
    """Submit a tuning job. It is `queued` at once; a worker picks it up.

    Send an `Idempotency-Key` header to make retries safe: the same key and body return the
    same job (200); the same key with another body is a 409."""
    job, created = service.create_job(
        session,
        tenant_id=tenant.id,
        body=body,
        settings=settings,
        idempotency_key=idempotency_key,
    )
    session.commit()  # the train task is sent after this commit
    if not created:
        response.status_code = 200
    return JobRead.from_row(job)


@router.get("", response_model=JobList)
def list_jobs(
    tenant: TenantDep,
    session: SessionDep,
    status: Annotated[
        Literal["queued", "running", "succeeded", "failed", "cancelled"] | None, Query()
    ] = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> JobList:
    rows = service.list_jobs(
        session, tenant_id=tenant.id, status=status, cursor=cursor, limit=limit
    )
    rows, next_cursor = page(rows, limit)
    return JobList(data=[JobRead.from_row(r) for r in rows], next_cursor=next_cursor)


@router.get("/{job_id}", response_model=JobRead)
def get_job(job_id: str, tenant: TenantDep, session: SessionDep) -> JobRead:
    return JobRead.from_row(service.get_job(session, tenant_id=tenant.id, job_id=job_id))


@router.post("/{job_id}/cancel", response_model=JobRead)
def cancel_job(job_id: str, tenant: TenantDep, session: SessionDep) -> JobRead:
    """Cancel: a queued job at once; a running job stops at the next step boundary."""
    job = service.cancel_job(session, tenant_id=tenant.id, job_id=job_id)
    session.commit()
    return JobRead.from_row(job)


@router.get(
    "/{job_id}/events",
    response_model=JobEventList,
    responses={200: {"content": {"text/event-stream": {}}}},
)
def list_events(
    job_id: str,
    request: Request,
    tenant: TenantDep,
    session: SessionDep,
    after: Annotated[int | None, Query(ge=0, le=2**63 - 1)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    progress: Annotated[
        bool,
        Query(
            description="With `Accept: text/event-stream`: also send `event: progress` (no "
            "`id`) when the status, progress or latest metrics change, with the metric points "
            "written since (live curves)."
        ),
    ] = False,
    last_event_id: Annotated[
        int | None,
        Header(
            ge=0,
            le=2**63 - 1,
            description="With `Accept: text/event-stream`: resume after this event (a "
            "reconnecting EventSource sends it).",
        ),
    ] = None,
) -> JobEventList | Response:
    """The job's event log, oldest first. Ask with `Accept: text/event-stream` for a live
    Server-Sent Events stream (`id:` is the event id, `event:` its kind, `data:` the event as
    JSON; a `: ping` comment keeps it alive) that ends when the job does. A tenant may hold
    `TUNESERVE_MAX_STREAMS_PER_TENANT` streams at once (429 `too_many_streams` beyond)."""
    job = service.get_job(session, tenant_id=tenant.id, job_id=job_id)
    if event_stream.wants_stream(request):
        return event_stream.open_stream(
            session, job=job, after=after, last_event_id=last_event_id, progress=progress
        )
    rows = service.list_events(session, job=job, after=after, limit=limit)
    more = len(rows) > limit
    rows = rows[:limit]
    return JobEventList(
        data=[JobEventRead.model_validate(r) for r in rows],
        next_cursor=str(rows[-1].id) if more else None,
    )


@router.get("/{job_id}/report", response_model=JobReport)
def get_report(
    job_id: str, request: Request, tenant: TenantDep, session: SessionDep, storage: StorageDep
) -> JobReport:
    """The evaluation report of a succeeded job: which evaluation was served, the metrics and
    per-class table of the served model on validation (and test), the confusion matrix,
    calibration, the training curves, and links to the plots. 409 until the job succeeds."""
    job = service.get_job(session, tenant_id=tenant.id, job_id=job_id)
    report = JobReport.model_validate(reports.read_report(job, storage))
    report.plots = {
        name: link(request, "get_report_plot", job_id=job.id, name=f"{name}.png")
        for name in reports.available_plots(job, storage)
    }
    return report


@router.get(
    "/{job_id}/report/plots/{name}",
    response_class=FileResponse,
    responses={200: {"content": {"image/png": {}}}},
)
def get_report_plot(
    job_id: str, name: str, tenant: TenantDep, session: SessionDep, storage: StorageDep
) -> FileResponse:
    """A plot of the report as PNG: `curves`, `confusion_matrix` or `calibration`."""
    job = service.get_job(session, tenant_id=tenant.id, job_id=job_id)
    return FileResponse(reports.plot_path(job, storage, name), media_type="image/png")


@router.get("/{job_id}/metrics", response_model=JobMetrics)
def get_metrics(job_id: str, tenant: TenantDep, session: SessionDep) -> JobMetrics:
    """The metric series: training loss points and one validation point per epoch."""
    job = service.get_job(session, tenant_id=tenant.id, job_id=job_id)
    rows = service.list_metrics(session, job=job)
    return JobMetrics(job_id=job.id, series=[MetricPoint.model_validate(r) for r in rows])
