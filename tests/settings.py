"""Settings for the test run: the product's settings with test-only infrastructure choices."""

from __future__ import annotations

import base64
import hashlib
import os
import socket

from mailsec.env import Nameserver, parse_encryption_keys
from mailsec.settings import *  # noqa: F403
from mailsec.settings import CELERY_BROKER_TRANSPORT_OPTIONS, STORAGES

SECRET_KEY = "tests-only-secret-key-not-used-anywhere-else-0123456789abcdef"
# Requests in tests are plain http; production keeps the redirect.
SECURE_SSL_REDIRECT = False
STORAGES = {
    **STORAGES,
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # speed only
# A fixed key for secrets at rest, so no test creates or uses var/encryption_keys; the test
# worker is given the same value, so it decrypts what the tests encrypt.
TEST_ENCRYPTION_KEYS = "tests:" + base64.urlsafe_b64encode(
    hashlib.sha256(b"mailsec tests only: encryption key for secrets at rest").digest()
).decode("ascii")
MAILSEC_ENCRYPTION_KEYS = parse_encryption_keys(TEST_ENCRYPTION_KEYS, source="tests")


def _redis_up(host: str = "127.0.0.1", port: int = 6379) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


# Tasks go to Redis on a database and queue of this run's own, where the worker fixture reads.
TEST_BROKER_URL = os.environ.get("MAILSEC_TEST_BROKER_URL", "redis://127.0.0.1:6379/15")
TEST_QUEUE = f"mailsec-test-{os.getpid()}"
REDIS_AVAILABLE = _redis_up()
if REDIS_AVAILABLE:
    CELERY_BROKER_URL = TEST_BROKER_URL
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TASK_DEFAULT_QUEUE = TEST_QUEUE
assert CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"] == 3600
# The live server's request threads end after each request: persistent connections would
# outlive them and block dropping the test database.
DATABASES["default"]["CONN_MAX_AGE"] = 0  # noqa: F405

# No test may reach the machine's own resolver: without the Knot fixture, lookups go to a
# loopback port where nothing answers DNS, and come back as errors.
MAILSEC_DNS_NAMESERVERS = [Nameserver("127.0.0.1", 9)]
MAILSEC_DNS_TIMEOUT = 1.0
