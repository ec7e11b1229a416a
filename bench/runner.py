"""The names a run was started with before the scheduler and the executor were split:
`Runner` is bench.scheduler.Scheduler. New code imports from bench.scheduler,
bench.executor and bench.guard."""

from bench.executor import Executor, Prepared, group_key
from bench.guard import Limits
from bench.scheduler import Scheduler, Summary

Runner = Scheduler

__all__ = ["Executor", "Limits", "Prepared", "Runner", "Scheduler", "Summary", "group_key"]
