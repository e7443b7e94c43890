"""Testing durable functions in-process: a temporary store, a virtual clock, and a drain loop.

with stepwell.testing.TestEnv(app) as env:
    env.send("order.placed", {"id": 7})
    env.run_until_idle()            # sleeps of a day pass in milliseconds
    [run] = env.app.runs()
    assert run.step("charge").output == {"ok": True}
"""

from stepwell.testing.env import TestEnv

__all__ = ["TestEnv"]
