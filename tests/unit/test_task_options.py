"""Task options that matter for hours-long streams (read from the task registry, no broker)."""

from tasks import app
from tasks.queues import COLLECT_TASK, PUBLISH_TASK, REMUX_TASK, STREAM_JOB_TASK, STS_DISPATCH_TASK


def test_long_running_stream_tasks_keep_no_trail_of_the_tasks_they_start():
    app.loader.import_default_modules()
    # A stream job starts a chain per segment; with a trail, every result would stay in memory for hours.
    assert app.tasks[STREAM_JOB_TASK].trail is False
    assert app.tasks[PUBLISH_TASK].trail is False


def test_only_the_idempotent_chain_tasks_are_acked_late():
    app.loader.import_default_modules()
    for name in (STS_DISPATCH_TASK, COLLECT_TASK, REMUX_TASK):
        assert app.tasks[name].acks_late and app.tasks[name].reject_on_worker_lost
    for name in (STREAM_JOB_TASK, PUBLISH_TASK):
        assert not app.tasks[name].acks_late
