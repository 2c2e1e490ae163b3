"""The daemon: APScheduler cron jobs that run the pipeline stages on time."""

from .daemon import JOB_DEFAULTS, Jobs, build_scheduler, run_daemon

__all__ = ["JOB_DEFAULTS", "Jobs", "build_scheduler", "run_daemon"]
