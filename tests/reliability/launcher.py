"""Starts gunicorn and `diiwaan worker` processes quickly, for the crash test.

Importing the application costs over a second of CPU; a hundred kill-and-restart cycles
would spend most of their time importing. This launcher imports everything once, then
for each line it reads on stdin forks a child that becomes, in its own process group and
session, exactly what the command line would start:

    web <port> <log>      gunicorn (gthread) serving server.app:create_app()
    worker <log>          `diiwaan worker` (server.cli:main)

and writes the child's pid on stdout. The children are real, separate processes: the
test kills them with SIGKILL (the whole process group, as a power cut would), and the
launcher reaps them. Run with the DIIWAAN_* environment of the site under test.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

# Everything a child needs, imported before any fork (and no thread, no database
# connection: the children make their own).
import gunicorn.app.wsgiapp  # noqa: F401

import server.app
import server.cli

PR_SET_CHILD_SUBREAPER = 36


def _become(log_path: str, argv: list[str]) -> None:
    os.setsid()  # its own process group: one killpg takes gunicorn's workers too
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    sys.argv = argv
    try:
        if argv[0] == "gunicorn":
            from gunicorn.app.wsgiapp import run

            run()
        else:
            server.cli.main(argv[1:], prog_name="diiwaan")
    finally:
        os._exit(0)


def main() -> None:
    # create_app imports the views and their libraries; done once here, each child's own
    # create_app takes a fraction of a second. (It opens no database connection.)
    server.app.create_app()
    # Adopt the orphans (gunicorn's workers once their arbiter is killed) and reap every
    # child as it dies, so a killed process group is gone at once, not left as zombies.
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    signal.signal(signal.SIGCHLD, lambda *_: _reap())
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "web":
            port, log_path = words[1], words[2]
            argv = [
                "gunicorn",
                "--worker-class",
                "gthread",
                "--workers",
                "1",
                "--threads",
                "4",
                "--graceful-timeout",
                "1",
                # Killed arbiters would leave a shared ~/.gunicorn/gunicorn.ctl behind.
                "--no-control-socket",
                "--bind",
                f"127.0.0.1:{port}",
                "server.app:create_app()",
            ]
        elif words[0] == "worker":
            log_path = words[1]
            argv = ["diiwaan", "worker", "--poll", "0.1"]
        else:
            print(f"error unknown command {words[0]!r}", flush=True)
            continue
        pid = os.fork()
        if pid == 0:
            _become(log_path, argv)
        print(pid, flush=True)


def _reap() -> None:
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


if __name__ == "__main__":
    main()
