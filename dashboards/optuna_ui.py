"""``python -m spx.dashboards.optuna_ui HOST PORT``: optuna-dashboard on the study storage whose URL
is in the environment variable ``SPX_OPTUNA_STORAGE``.

``spx ui optuna`` starts it. optuna-dashboard's own command takes the storage URL as an
argument, and a command line is public (``ps`` shows it to every user), password and all;
this launcher serves the same app (``optuna_dashboard.wsgi``) with the URL from the
environment, on a threaded server like the command's own.
"""

from __future__ import annotations

import errno
import os
import sys
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIServer, make_server

STORAGE_ENV = "SPX_OPTUNA_STORAGE"


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a browser's open connection does not hold Ctrl-C


def serve(host: str, port: int) -> None:
    """Serve optuna-dashboard on ``$SPX_OPTUNA_STORAGE`` at ``host:port`` until stopped."""
    from optuna_dashboard import wsgi

    app = wsgi(os.environ[STORAGE_ENV])
    with make_server(host, port, app, server_class=_Server) as server:
        print(f"Listening on http://{host}:{port}/", file=sys.stderr)
        server.serve_forever()


if __name__ == "__main__":
    from spx.errors import ConfigError

    try:
        host, port = sys.argv[1], int(sys.argv[2])
    except (IndexError, ValueError):
        raise ConfigError(
            "usage: python -m spx.dashboards.optuna_ui HOST PORT", field="argv"
        ) from None
    try:
        serve(host, port)
    except KeyboardInterrupt:
        sys.exit(130)
    except OSError as exc:  # taken since `spx ui` checked it: one line, as spx ui says it
        if exc.errno != errno.EADDRINUSE:
            raise
        print(f"error: port {port} on {host} is already in use", file=sys.stderr)
        sys.exit(1)
