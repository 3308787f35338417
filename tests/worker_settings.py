"""Settings for the tests' real Celery worker: the product's, fetching MTA-STS policies from
the test policy server's port.

The worker otherwise takes its configuration from the environment, as in production; only the
port has no production variable (RFC 8461 fixes 443), so this test-only module sets it from
MAILSEC_TEST_MTA_STS_PORT, which the celery_worker fixture passes.
"""

from __future__ import annotations

import os

from mailsec.settings import *  # noqa: F403

MAILSEC_MTA_STS_HTTPS_PORT = int(os.environ["MAILSEC_TEST_MTA_STS_PORT"])
