"""A one-shot client process: `python -m tests.faults.client URL HISTORY send NAME EVENT_ID [DATA]`.

It logs its call in the history, so a crash between invoke and ok (an armed crash point) leaves
an invoke without a completion, exactly as a client killed mid-call would.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.faults.faults_app import build_app
from tests.faults.history import History


def main(argv: list[str]) -> None:
    url, history_path, command, *rest = argv
    app = build_app(url)
    history = History(Path(history_path))
    if command == "send":
        name, event_id, *data = rest
        payload = json.loads(data[0]) if data else {}
        history.call("client", "send", event_id, lambda: app.send(name, payload, id=event_id))
    else:
        raise SystemExit(f"unknown command {command!r}")
    app.close()


if __name__ == "__main__":
    main(sys.argv[1:])
