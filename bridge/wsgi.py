"""The gunicorn target: ``bridge.wsgi:app`` (config file from BRIDGE_CONFIG)."""

from bridge.app import create_app

app = create_app()
