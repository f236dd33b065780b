"""The gunicorn target: ``bridge.runtime.wsgi:app`` (config file from BRIDGE_CONFIG), one per worker process.

Each worker reloads its own rules on SIGHUP (bridge/core/rulebook.py). gunicorn resets SIGHUP to its
default (end the process) just before loading the app, so it is ignored while the app loads — the
worker is reading the newest rules then anyway — and the reload handler is installed once it is up.
"""

import signal
import threading

from bridge.core.rulebook import install_sighup
from bridge.runtime.app import create_app

_main = threading.current_thread() is threading.main_thread()
if _main:
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
app = create_app()
if _main:
    install_sighup(app.extensions["bridge"].rules)
