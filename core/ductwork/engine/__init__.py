"""The durable jobs engine: a run store, schedules, workers (see docs/jobs.md).

Nothing here is imported by ``import ductwork``: SQLAlchemy loads only when a job is dispatched,
listed or worked on. Modules: :mod:`~ductwork.engine.spec` (what a dispatch asks for, checked
before storing), :mod:`~ductwork.engine.cron`, :mod:`~ductwork.engine.schema`,
:mod:`~ductwork.engine.store` (with :mod:`~ductwork.engine.connect`,
:mod:`~ductwork.engine.records`, :mod:`~ductwork.engine.claims` and
:mod:`~ductwork.engine.outcomes`), :mod:`~ductwork.engine.retention`,
:mod:`~ductwork.engine.scheduler`,
:mod:`~ductwork.engine.admin`, :mod:`~ductwork.engine.executors`, :mod:`~ductwork.engine.worker`.
"""
