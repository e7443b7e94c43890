"""Every conformance test, for `from stepwell.testing.conformance.suite import *` in a backend's test module."""

from stepwell.testing.conformance.basics import *  # noqa: F403
from stepwell.testing.conformance.cron import *  # noqa: F403
from stepwell.testing.conformance.events import *  # noqa: F403
from stepwell.testing.conformance.flow_concurrency import *  # noqa: F403
from stepwell.testing.conformance.functions import *  # noqa: F403
from stepwell.testing.conformance.insight import *  # noqa: F403
from stepwell.testing.conformance.keys import *  # noqa: F403
from stepwell.testing.conformance.maintenance import *  # noqa: F403
from stepwell.testing.conformance.queue import *  # noqa: F403
from stepwell.testing.conformance.reads import *  # noqa: F403
from stepwell.testing.conformance.waiting import *  # noqa: F403
