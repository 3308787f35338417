"""Shared fixtures: users in organisations, API clients, and the real servers the tests use."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from rest_framework.test import APIClient

from mailsec.celery import app as celery_app
from mailsec.env import parse_nameserver
from mailsec.models import Organisation, Role, TokenScope
from mailsec.services.members import membership_set, organisation_create
from mailsec.services.tokens import api_token_create
from tests import settings as test_settings
from tests.servers import CeleryWorker, KnotServer, PolicyWebServer, missing

PASSWORD = "correct horse battery staple"


# --- people and organisations ------------------------------------------------------------


def _user(username: str) -> Any:
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user(username=username, password=PASSWORD)


@pytest.fixture
def org(db: None) -> Organisation:
    return organisation_create(name="Acme Mail", actor=None)


@pytest.fixture
def other_org(db: None) -> Organisation:
    return organisation_create(name="Other Org", actor=None)


@pytest.fixture
def owner(org: Organisation) -> Any:
    user = _user("olivia")
    membership_set(organisation=org, user=user, role=Role.OWNER, actor=None)
    return user


@pytest.fixture
def viewer(org: Organisation) -> Any:
    user = _user("victor")
    membership_set(organisation=org, user=user, role=Role.VIEWER, actor=None)
    return user


@pytest.fixture
def outsider(other_org: Organisation) -> Any:
    """A member of another organisation only."""
    user = _user("oscar")
    membership_set(organisation=other_org, user=user, role=Role.OWNER, actor=None)
    return user


def token_client(user: Any, scope: TokenScope = TokenScope.WRITE) -> APIClient:
    _token, key = api_token_create(user=user, scope=scope, actor=None)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


@pytest.fixture
def owner_api(owner: Any) -> APIClient:
    return token_client(owner)


@pytest.fixture
def viewer_api(viewer: Any) -> APIClient:
    return token_client(viewer)


@pytest.fixture
def outsider_api(outsider: Any) -> APIClient:
    return token_client(outsider)


def generated_dkim_key(domain: Any, actor: Any, **kwargs: Any) -> Any:
    """A DKIM key created as the API does and generated as the worker does, in this process."""
    from dns_records import dkim_keys

    key, _run = dkim_keys.dkim_key_create(domain=domain, actor=actor, **kwargs)
    dkim_keys.dkim_key_generate(key_id=key.pk)
    key.refresh_from_db()
    return key


# --- real servers -------------------------------------------------------------------------


ENFORCE_GOOD = (
    "version: STSv1\nmode: enforce\nmx: mx1.good.test\nmx: *.good.test\nmax_age: 604800\n"
)
# Host -> (HTTP status, Content-Type, body) served at /.well-known/mta-sts.txt.
MTA_STS_POLICIES = {
    "mta-sts.good.test": (200, "text/plain", ENFORCE_GOOD),
    "mta-sts.enforce.policy.test": (200, "text/plain; charset=utf-8", ENFORCE_GOOD),
    "mta-sts.testing.policy.test": (
        200, "text/plain", "version: STSv1\nmode: testing\nmx: *.good.test\nmax_age: 604800\n",
    ),
    "mta-sts.mismatch.policy.test": (
        200, "text/plain", "version: STSv1\nmode: enforce\nmx: mail.elsewhere.test\nmax_age: 604800\n",
    ),
    "mta-sts.shortage.policy.test": (
        200, "text/plain", "version: STSv1\nmode: enforce\nmx: *.good.test\nmax_age: 300\n",
    ),
    "mta-sts.broken.policy.test": (200, "text/plain", "version: STSv1\nmode: strict\nmax_age: 1\n"),
    "mta-sts.html.policy.test": (200, "text/html", "<html>policy</html>"),
}  # fmt: skip
# Names on the server's certificate: mta-sts.missing.policy.test is served (404) but
# mta-sts.badcert.policy.test is not on the certificate at all.
MTA_STS_CERT_NAMES = [*MTA_STS_POLICIES, "mta-sts.missing.policy.test"]


BIMI_LOGO = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<svg version="1.2" baseProfile="tiny-ps" xmlns="http://www.w3.org/2000/svg" '
    b'viewBox="0 0 100 100"><title>Good</title><rect width="100" height="100" fill="#1a73e8"/></svg>\n'
)
# SVG 1.1 with no baseProfile and no title: receivers that check BIMI show nothing.
BIMI_PLAIN_SVG = (
    b'<svg version="1.1" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10">'
    b'<rect width="10" height="10"/></svg>'
)


def _self_signed_mark_certificate() -> bytes:
    """A certificate for selfsigned.policy.test that no Mark Verifying Authority issued."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "selfsigned.policy.test")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("selfsigned.policy.test")]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


# (host, path) -> (HTTP status, Content-Type, body): the BIMI assets of the fixture zones.
BIMI_FILES = {
    ("mta-sts.good.test", "/bimi/vmc.pem"): (
        200,
        "application/pem-certificate-chain",
        _self_signed_mark_certificate(),
    ),
    ("mta-sts.good.test", "/bimi/logo.svg"): (200, "image/svg+xml", BIMI_LOGO),
    ("mta-sts.good.test", "/bimi/plain.svg"): (200, "image/svg+xml", BIMI_PLAIN_SVG),
    ("mta-sts.good.test", "/bimi/page.html"): (200, "text/html", b"<html>not a logo</html>"),
}


@pytest.fixture(scope="session")
def policy_web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PolicyWebServer]:
    """HTTPS on a free port of 127.0.0.15 serving the MTA-STS policies of the fixture zones."""
    server = PolicyWebServer(
        tmp_path_factory.mktemp("policy-web"),
        MTA_STS_POLICIES,
        MTA_STS_CERT_NAMES,
        files=BIMI_FILES,
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def knot(
    tmp_path_factory: pytest.TempPathFactory, policy_web: PolicyWebServer
) -> Iterator[KnotServer]:
    """Knot DNS serving tests/fixtures/zones; the product's resolver is pointed at it.

    The MTA-STS policy server comes with it, since the fixture zones point policy hosts there;
    mailsec may reach loopback, trusts the server's test CA and fetches policies from the
    server's port, only while it runs.
    """
    server = KnotServer(tmp_path_factory.mktemp("knot"))
    server.start()
    previous = (
        settings.MAILSEC_DNS_NAMESERVERS,
        settings.MAILSEC_PROBE_ALLOW_NETWORKS,
        settings.MAILSEC_TLS_CA_FILE,
        settings.MAILSEC_MTA_STS_HTTPS_PORT,
    )
    settings.MAILSEC_DNS_NAMESERVERS = [parse_nameserver(server.nameserver)]
    settings.MAILSEC_PROBE_ALLOW_NETWORKS = [ipaddress.ip_network("127.0.0.0/8")]
    settings.MAILSEC_TLS_CA_FILE = str(policy_web.ca_file)
    settings.MAILSEC_MTA_STS_HTTPS_PORT = policy_web.port
    try:
        yield server
    finally:
        (
            settings.MAILSEC_DNS_NAMESERVERS,
            settings.MAILSEC_PROBE_ALLOW_NETWORKS,
            settings.MAILSEC_TLS_CA_FILE,
            settings.MAILSEC_MTA_STS_HTTPS_PORT,
        ) = previous
        server.stop()


def _database_url() -> str:
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{Path(db['NAME']).resolve()}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    port = f":{db['PORT']}" if db["PORT"] else ""
    return f"postgres://{auth}@{db['HOST']}{port}/{db['NAME']}"


@pytest.fixture(scope="session")
def celery_worker(
    django_db_setup: None,
    django_db_blocker: Any,
    knot: KnotServer,
    policy_web: PolicyWebServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[CeleryWorker]:
    """A real Celery worker on Redis, reading the test database and resolving through Knot.

    Its settings are the product's plus the policy server's port (tests/worker_settings.py);
    everything else comes from the environment, as in production.
    """
    if not test_settings.REDIS_AVAILABLE:
        missing("Redis is not running on 127.0.0.1:6379")
    with django_db_blocker.unblock():
        database_url = _database_url()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.worker_settings",
        "MAILSEC_DEBUG": "1",
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": test_settings.TEST_BROKER_URL,
        "MAILSEC_CELERY_QUEUE": test_settings.TEST_QUEUE,
        "MAILSEC_DNS_NAMESERVERS": knot.nameserver,
        "MAILSEC_PROBE_ALLOW_NETWORKS": "127.0.0.0/8",
        "MAILSEC_TLS_CA_FILE": settings.MAILSEC_TLS_CA_FILE,
        "MAILSEC_DNS_TIMEOUT": "2",
        "MAILSEC_VAR_DIR": str(tmp_path_factory.mktemp("worker-var")),
        "MAILSEC_TEST_MTA_STS_PORT": str(policy_web.port),
        # Debug would generate the worker its own key: it must decrypt what the tests encrypt.
        "MAILSEC_ENCRYPTION_KEYS": test_settings.TEST_ENCRYPTION_KEYS,
    }
    worker = CeleryWorker(tmp_path_factory.mktemp("worker"), env)
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()


@pytest.fixture(scope="session", autouse=True)
def _purge_test_queue() -> Iterator[None]:
    """Drop this run's queue afterwards so tasks never outlive the run."""
    yield
    if test_settings.REDIS_AVAILABLE:
        with celery_app.connection_for_write() as conn:
            conn.default_channel.queue_delete(test_settings.TEST_QUEUE)  # type: ignore[attr-defined]
