"""The Flask app factory. Validation and enqueueing only; the work runs on the Celery pools."""

from __future__ import annotations

from typing import Any

import redis
from celery import Celery
from flask import Flask, jsonify
from prometheus_client import CollectorRegistry
from prometheus_flask_exporter import PrometheusMetrics
from werkzeug.exceptions import HTTPException

from api.reconciler import Reconciler
from tasks.config import celery_config
from worker.core.settings import Settings, load_settings
from worker.pipeline.runtime import make_registry
from worker.state.metrics import RedisCollector
from worker.state.stream_keys import StreamKeys


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    test_config = test_config or {}
    settings: Settings = test_config.pop("SETTINGS", None) or load_settings()
    app.config.from_mapping(
        MAX_CONTENT_LENGTH=settings.max_hook_body_bytes,
        LIVEDUB=settings,
        HOOK_SECRET=settings.require_hook_secret(),
    )
    app.config.update(test_config)
    app.extensions["livedub_registry"] = make_registry(settings)
    app.extensions["livedub_stream_keys"] = StreamKeys(app.extensions["livedub_registry"].client)
    celery_init_app(app)
    if settings.reconcile_interval_s > 0:
        app.extensions["livedub_reconciler"] = Reconciler(
            app.extensions["livedub_registry"], settings.start_timeout_s, settings.reconcile_interval_s).start()

    from api.dashboard import bp as dashboard_bp
    from api.health import bp as health_bp
    from api.hooks import bp as hooks_bp
    from api.media_auth import bp as media_auth_bp
    from api.streams import bp as streams_bp

    app.register_blueprint(health_bp)
    app.register_blueprint(hooks_bp)
    app.register_blueprint(media_auth_bp)
    app.register_blueprint(streams_bp)
    app.register_blueprint(dashboard_bp)

    @app.errorhandler(HTTPException)
    def _json_error(exc: HTTPException) -> Any:
        return jsonify(error=exc.name, reason=exc.description), exc.code

    @app.errorhandler(redis.RedisError)
    def _redis_down(exc: redis.RedisError) -> Any:
        return jsonify(error="Service Unavailable", reason=f"stream registry unavailable: {type(exc).__name__}"), 503

    metrics_registry = CollectorRegistry(auto_describe=True)
    reg = app.extensions["livedub_registry"]
    metrics_registry.register(RedisCollector(reg.metrics, reg.count_by_state))
    PrometheusMetrics(app, registry=metrics_registry, group_by="url_rule")
    return app


def celery_init_app(app: Flask) -> Celery:
    """The API's Celery client: it only sends tasks by name, routed by ``task_routes``."""
    celery = Celery(app.name)
    celery.conf.update(celery_config(app.config["LIVEDUB"]))
    app.extensions["celery"] = celery
    return celery
