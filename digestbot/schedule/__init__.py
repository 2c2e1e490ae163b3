"""The daemon: APScheduler cron jobs that run the pipeline stages on time."""

from .daemon import Jobs, build_scheduler, run_daemon

__all__ = ["Jobs", "build_scheduler", "run_daemon"]
