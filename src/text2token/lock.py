"""One run per output folder: a lock file holding the owner's host and pid.

A second ``text2token train`` pointed at the same folder refuses to start. A lock left by a
process that no longer exists (killed with ``kill -9``, a crashed machine's reboot) is stale:
it is detected and taken over. Locks made on another host cannot be checked and are honoured.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from .errors import Text2TokenError

LOCK_NAME = ".text2token.lock"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


class RunLock:
    """``with RunLock(run_dir): ...`` holds ``run_dir/.text2token.lock`` for the block; :meth:`for_output` holds a
    lock beside an output file or folder (``.NAME.lock``), so that one encode or index writes it at a time."""

    def __init__(self, run_dir: str | os.PathLike, name: str = LOCK_NAME, target: str | None = None, what: str = "run"):
        self.path = Path(run_dir) / name
        self.target = target or str(Path(run_dir))
        self.what = what
        self.held = False

    @classmethod
    def for_output(cls, output: str | os.PathLike, what: str) -> RunLock:
        output = Path(output)
        return cls(output.parent, f".{output.name}.lock", target=str(output), what=what)

    def acquire(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._owner()
                if owner is not None and not self._stale(owner):
                    raise Text2TokenError(
                        f"{self.target} is in use by another {self.what} (pid {owner.get('pid')} on {owner.get('host')}, "
                        f"started {owner.get('started')}); wait for it, or choose another --output. If that "
                        f"{self.what} is gone, delete {self.path}"
                    ) from None
                self.path.unlink(missing_ok=True)  # stale (or unreadable half-written) lock: take it over
                continue
            with os.fdopen(fd, "w") as fh:
                json.dump(me, fh)
            self.held = True
            return self
        raise Text2TokenError(f"could not take the lock {self.path} (another process keeps creating it)")

    def _owner(self) -> dict | None:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}  # released meanwhile: retry
        except (OSError, ValueError):
            # Being written right now by its owner, or garbage: give a writer a moment, then treat as stale.
            time.sleep(0.2)
            try:
                return json.loads(self.path.read_text())
            except (OSError, ValueError):
                return None

    @staticmethod
    def _stale(owner: dict) -> bool:
        if not owner:
            return True
        if owner.get("host") != socket.gethostname():
            return False
        pid = owner.get("pid")
        return not isinstance(pid, int) or (pid != os.getpid() and not _pid_alive(pid))

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
