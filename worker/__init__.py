"""The work itself: plain functions and classes that run without Celery."""
