"""Process plumbing: the app factory, the WSGI entry, gunicorn logging, a local Redis, the demo."""
