"""Stop a run's process group when the process that started it dies without cleaning up.

A Dask worker killed with SIGKILL (an out-of-memory kill, a lost host, `kill -9` of its nanny)
runs no `finally`: the local runner's process, in its own session so that a time-out kills its
whole tree, would finish beside its retry on another worker. A watcher, a tiny Python process
started beside each run, holds the read end of a pipe whose only write end is the runner's: when
the run ends normally the runner writes `done` and the watcher exits; when the runner's process
dies, the pipe closes unannounced and the watcher kills the run's process group.
"""

from __future__ import annotations

import subprocess
import sys

# -I -S: no site-packages, no environment, no user folder: a start of a few milliseconds.
_WATCH = """\
import os, signal, sys
said = sys.stdin.buffer.read()
if said != b"done":
    try:
        os.killpg(int(sys.argv[1]), signal.SIGKILL)
    except OSError:
        pass
"""


class GroupWatcher:
    """Kills process group `pgid` if this process dies before `release()` is called."""

    def __init__(self, pgid: int) -> None:
        self.pgid = pgid
        self.proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", _WATCH, str(pgid)], stdin=subprocess.PIPE,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def release(self) -> None:
        """The run has ended (its group is already killed or gone): the watcher leaves quietly."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(b"done")
            self.proc.stdin.close()
        except OSError:  # the watcher is gone already
            pass
        self.proc.wait()
