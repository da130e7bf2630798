"""The Celery entry point: `celery --app service.worker worker` and `celery --app service.worker
beat`. The Flask app is built from the environment, as `flask --app service` does."""

from __future__ import annotations

from service import create_app

flask_app = create_app()
celery = flask_app.extensions["celery"]
