"""The pre-flight audit of a job's data at submit (``POST /v1/jobs``).

:mod:`~app.audit.scan` reads each dataset once and collects what the checks need,
:mod:`~app.audit.tokens` counts tokens and finds the model's limit, :mod:`~app.audit.checks`
turns a scan into findings, and :mod:`~app.audit.run` (:func:`~app.audit.run.audit_job`)
runs them for a submission.
"""
