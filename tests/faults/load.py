"""A steady mixed load for fault campaigns and the soak: every send logged in the history."""

from __future__ import annotations

import threading
import time

import stepwell
from tests.faults.faults_app import JOB, LIMITED, MIXED, ORDERED, PUSHED
from tests.faults.history import History


class Load:
    """Sends a mix of events at a steady pace on its own thread, so that pauses find runs in flight
    and claimed ahead: jobs of three steps with gaps, ordered keys, a concurrency limit, and runs
    that sleep, fan out, wait and reduce; with `push`, also jobs of three steps of the pushed function."""

    def __init__(
        self, client: stepwell.App, history: History, rate: float, *, scale: float = 1.0, push: bool = False
    ) -> None:
        """`rate`: events per second; `scale`: multiplies every pause inside the steps; `push`: one event
        in six starts the pushed function (served by a web app: see tests/faults/push.py)."""
        self.client, self.history, self.rate, self.scale, self.push = client, history, rate, scale, push
        self.sent = 0
        self.errors: list[str] = []  # anything a send raised that the history does not classify
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="load", daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _loop(self) -> None:
        seq = 0
        while not self._stop.wait(1 / self.rate):
            n = self.sent
            data: dict[str, object]
            if self.push and n % 6 == 5:
                event, name, data = f"pushed-{n}", PUSHED, {"pause": 0.1 * self.scale}
            elif n % 5 == 4:
                event, name, data = f"mixed-{n}", MIXED, {"pause": 0.05 * self.scale}
            elif n % 4 == 3:
                key = n % 3
                event, name, data = f"ordered-{n}", ORDERED, {"key": f"k{key}", "seq": seq, "pause": 0.1 * self.scale}
                seq += 1
            elif n % 4 == 2:
                event, name, data = f"limited-{n}", LIMITED, {"pause": 0.3 * self.scale}
            else:
                event, name, data = f"job-{n}", JOB, {"pause": 0.1 * self.scale, "gap": 0.1 * self.scale}
            self._send(event, name, data)
            self.sent += 1
        self.stopped_at = time.time()

    def _send(self, event: str, name: str, data: dict[str, object]) -> None:
        try:
            self.history.call("client", "send", event, lambda: self.client.send(name, data, id=event))
        except Exception as error:  # noqa: BLE001 - reported by the test, the load goes on
            self.errors.append(f"{event}: {type(error).__module__}.{type(error).__name__}: {error}")
