"""One driver per study: the study's ``driver`` attribute names the process that runs it, with
a heartbeat; another driver refuses to start while it is fresh, and takes the study over (and
recovers its RUNNING trials) once it is stale or its process is gone."""

from __future__ import annotations

import os
import socket
import time
from typing import Any

from ..errors import UserError

__all__ = ["HEARTBEAT_EVERY_S", "HEARTBEAT_STALE_S", "Lease", "driver_state"]

#: the driver records a heartbeat this often
HEARTBEAT_EVERY_S = 10.0
#: a driver silent this long is taken as dead
HEARTBEAT_STALE_S = 60.0


def driver_state(driver: Any, running: int) -> dict[str, Any]:
    """Whether a driver runs the study now: ``alive`` (a recent heartbeat and, on this machine, a
    live process), ``dead`` (it stopped without releasing the study: killed), or ``none``."""
    if not driver:
        return {"state": "none", "running_trials": running}
    age = time.time() - float(driver.get("heartbeat", 0))
    alive = age < HEARTBEAT_STALE_S
    if alive and driver.get("host") == socket.gethostname():
        try:
            os.kill(int(driver["pid"]), 0)
        except (ProcessLookupError, ValueError, TypeError):
            alive = False
        except PermissionError:
            pass
    return {
        "state": "alive" if alive else "dead",
        "host": driver.get("host"),
        "pid": driver.get("pid"),
        "heartbeat_age_s": round(age, 1),
        "running_trials": running,
    }


class Lease:
    """This process's claim on ``study`` (an ``optuna.Study``)."""

    def __init__(self, study: Any, study_name: str) -> None:
        self.study = study
        self.study_name = study_name
        self.me = {"host": socket.gethostname(), "pid": os.getpid()}
        self._last_beat = 0.0

    def claim(self) -> None:
        """Take the study, or a clear error naming the live driver that holds it (its RUNNING
        trials would be failed as stale by this one)."""
        other = self.study.user_attrs.get("driver")
        if other and (other.get("host"), other.get("pid")) != (self.me["host"], self.me["pid"]):
            state = driver_state(other, 0)
            if state["state"] == "alive":
                raise UserError(
                    f"study {self.study_name!r} is being run by process {other.get('pid')} on {other.get('host')} "
                    f"(last heartbeat {state['heartbeat_age_s']:.0f} s ago); one driver per study. Stop it first, or wait "
                    f"{HEARTBEAT_STALE_S:.0f} s if it was killed on another machine"
                )
        self.beat(force=True)

    def beat(self, *, force: bool = False) -> None:
        now = time.time()
        if force or now - self._last_beat >= HEARTBEAT_EVERY_S:
            self._last_beat = now
            self.study.set_user_attr("driver", {**self.me, "heartbeat": now})

    def release(self) -> None:
        try:
            self.study.set_user_attr("driver", None)
        except Exception:
            pass  # the study stays claimed until the heartbeat goes stale
