"""DKIM keys through their whole life against a real Knot: generated, published by RFC 2136
with TSIG (and by hand), activated only once DNS shows them, rotated with overlap, retired."""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from dns_records import dkim_keys
from dns_records.lookups import LookupStatus
from dns_records.models import DkimKey, DkimKeyState, Domain
from dns_records.resolver import Resolver
from mailsec import secrets
from mailsec.env import parse_nameserver
from mailsec.models import AuditLog
from tests.conftest import generated_dkim_key
from tests.servers import KnotServer

pytestmark = [pytest.mark.knot, pytest.mark.django_db]

ZONE = "dkim.test"
TSIG = ("mailsec-update", "hmac-sha256", base64.b64encode(os.urandom(32)).decode())


def _spki_b64(bits: int) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def _quoted(value: str) -> str:
    return " ".join(f'"{value[i : i + 255]}"' for i in range(0, len(value), 255))


ZONE_TEXT = f"""$ORIGIN {ZONE}.
$TTL 300
@       SOA   ns1.{ZONE}. hostmaster.{ZONE}. 2026120301 7200 3600 1209600 300
@       NS    ns1.{ZONE}.
ns1     A     127.0.0.19
@       MX    10 mx1.{ZONE}.
mx1     A     192.0.2.40
google._domainkey  TXT  {_quoted("v=DKIM1; k=rsa; p=" + _spki_b64(2048))}
weak._domainkey    TXT  {_quoted("v=DKIM1; k=rsa; p=" + _spki_b64(1024))}
"""


@pytest.fixture(scope="module")
def dkim_knot(tmp_path_factory: pytest.TempPathFactory, knot: Any) -> Iterator[KnotServer]:
    """A Knot of this module's own serving dkim.test, which accepts updates signed with TSIG."""
    source = tmp_path_factory.mktemp("dkim-zones")
    (source / f"{ZONE}.zone").write_text(ZONE_TEXT)
    server = KnotServer(
        tmp_path_factory.mktemp("dkim-knot"),
        address="127.0.0.19",
        source=source,
        update_key=TSIG,
        updatable=(ZONE,),
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def resolver(dkim_knot: KnotServer) -> Resolver:
    return Resolver(nameservers=[parse_nameserver(dkim_knot.nameserver)], timeout=2)


@pytest.fixture
def domain(org: Any) -> Domain:
    return Domain.objects.create(organisation=org, name=ZONE)


@pytest.fixture
def updatable(domain: Domain, dkim_knot: KnotServer, owner: Any) -> Domain:
    dkim_keys.dns_update_set(
        domain=domain, server=dkim_knot.nameserver, zone=ZONE, tsig_name=TSIG[0],
        tsig_algorithm=TSIG[1], tsig_secret=base64.b64decode(TSIG[2]), actor=owner,
    )  # fmt: skip
    return domain


def _record(resolver: Resolver, key: DkimKey) -> tuple[str, ...]:
    lookup = resolver.lookup(key.dns_name, "TXT")
    return lookup.records if lookup.status is LookupStatus.OK else ()


def _no_active_key_without_its_record(resolver: Resolver) -> None:
    for key in DkimKey.objects.filter(state=DkimKeyState.ACTIVE):
        assert key.dns_value in _record(resolver, key), f"{key} is active without its record"


def _advance(resolver: Resolver, at: Any) -> dict[str, int]:
    moved = dkim_keys.dkim_keys_advance(now=at, resolver=resolver)
    _no_active_key_without_its_record(resolver)
    return moved


def test_a_rotation_walks_every_state_and_never_signs_with_an_unpublished_key(
    updatable, owner, resolver, settings
):
    settings.MAILSEC_DKIM_ACTIVATE_AFTER_MINUTES = 60
    settings.MAILSEC_DKIM_GRACE_DAYS = 7
    now = timezone.now()
    first = generated_dkim_key(updatable, owner)
    assert first.state == DkimKeyState.PENDING and first.algorithm == "rsa" and first.bits == 2048
    assert re.fullmatch(r"ms\d{6}r", first.selector)
    # Published through RFC 2136 as it was generated; seen in DNS on the next step.
    assert _record(resolver, first) == (first.dns_value,)
    assert _advance(resolver, now)["published"] == 1
    # Visible, but receivers may still hold a cached "no such record": not active yet.
    assert _advance(resolver, now + timedelta(minutes=30))["active"] == 0
    assert _advance(resolver, now + timedelta(minutes=61))["active"] == 1
    first.refresh_from_db()
    assert first.state == DkimKeyState.ACTIVE

    successor, _run = dkim_keys.dkim_key_rotate(key=first, actor=owner)
    assert successor.algorithm == "rsa" and successor.predecessor == first
    dkim_keys.dkim_key_generate(key_id=successor.pk)
    successor.refresh_from_db()
    later = now + timedelta(days=1)
    assert _advance(resolver, later)["published"] == 1
    assert _advance(resolver, later + timedelta(minutes=5))["active"] == 0
    moved = _advance(resolver, later + timedelta(minutes=61))
    assert (moved["active"], moved["retiring"]) == (1, 1)
    first.refresh_from_db()
    successor.refresh_from_db()
    assert (first.state, successor.state) == (DkimKeyState.RETIRING, DkimKeyState.ACTIVE)
    # Mail signed by the old key is still in flight: its record stays through the grace period.
    assert _record(resolver, first) == (first.dns_value,)
    assert _advance(resolver, later + timedelta(days=6))["retired"] == 0
    assert _advance(resolver, later + timedelta(days=7, hours=2))["retired"] == 1
    first.refresh_from_db()
    assert first.state == DkimKeyState.RETIRED and first.record_removed_at is not None
    assert _record(resolver, first) == ()
    assert _record(resolver, successor) == (successor.dns_value,)
    actions = set(AuditLog.objects.filter(object_type="dkimkey").values_list("action", flat=True))
    assert {"dkim_key.create", "dkim_key.generate", "dkim_key.published", "dkim_key.active",
            "dkim_key.retiring", "dkim_key.retired"} <= actions  # fmt: skip


def test_a_key_whose_record_vanished_is_never_activated(updatable, owner, resolver, settings):
    settings.MAILSEC_DKIM_ACTIVATE_AFTER_MINUTES = 60
    now = timezone.now()
    key = generated_dkim_key(updatable, owner, algorithm="ed25519")
    assert _advance(resolver, now)["published"] == 1
    target = updatable.dns_update
    dkim_keys._send(target, delete=[key.dns_name])  # someone removes it from the zone
    assert _advance(resolver, now + timedelta(hours=2))["active"] == 0
    key.refresh_from_db()
    assert key.state == DkimKeyState.PUBLISHED


def test_a_record_published_by_hand_is_seen(domain, owner, resolver, dkim_knot, settings):
    settings.MAILSEC_DKIM_ACTIVATE_AFTER_MINUTES = 0
    key = generated_dkim_key(domain, owner, algorithm="ed25519", selector="hand")
    assert key.selector == "hand"
    assert _advance(resolver, timezone.now())["published"] == 0
    zone_file = Path(dkim_knot.directory) / "zones" / f"{ZONE}.zone"
    text = zone_file.read_text().replace("2026120301", "2026120302")
    zone_file.write_text(text + f"hand._domainkey TXT {_quoted(key.dns_value)}\n")
    dkim_knot.reload()
    moved = _advance(resolver, timezone.now())
    assert (moved["published"], moved["active"]) == (1, 1)


def test_rsa_and_ed25519_sign_side_by_side(updatable, owner, resolver, settings):
    settings.MAILSEC_DKIM_ACTIVATE_AFTER_MINUTES = 0
    rsa_key = generated_dkim_key(updatable, owner)
    ed_key = generated_dkim_key(updatable, owner, algorithm="ed25519")
    _advance(resolver, timezone.now())
    _advance(resolver, timezone.now())
    states = set(DkimKey.objects.values_list("selector", "state"))
    assert states == {(rsa_key.selector, "active"), (ed_key.selector, "active")}


def test_a_second_key_of_one_algorithm_waits_to_be_a_successor(
    updatable, owner, resolver, settings
):
    settings.MAILSEC_DKIM_ACTIVATE_AFTER_MINUTES = 0
    first = generated_dkim_key(updatable, owner)
    _advance(resolver, timezone.now())
    _advance(resolver, timezone.now())
    second = generated_dkim_key(updatable, owner)
    _advance(resolver, timezone.now())
    _advance(resolver, timezone.now())
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.state, second.state) == (DkimKeyState.ACTIVE, DkimKeyState.PUBLISHED)


def test_automatic_rotation_starts_a_successor_after_the_interval(
    updatable, owner, resolver, settings
):
    settings.MAILSEC_DKIM_ACTIVATE_AFTER_MINUTES = 0
    Domain.objects.filter(pk=updatable.pk).update(dkim_rotation_days=90)
    key = generated_dkim_key(updatable, owner)
    now = timezone.now()
    _advance(resolver, now)
    _advance(resolver, now)
    assert _advance(resolver, now + timedelta(days=89))["rotated"] == 0
    assert _advance(resolver, now + timedelta(days=91))["rotated"] == 1
    assert DkimKey.objects.get(predecessor=key).state == DkimKeyState.GENERATING


def test_the_private_key_is_encrypted_and_bound_to_its_row(updatable, owner):
    first = generated_dkim_key(updatable, owner)
    second = generated_dkim_key(updatable, owner, algorithm="ed25519")
    assert b"PRIVATE KEY" in secrets.decrypt(first.private_key, context=first.secret_context)
    assert "PRIVATE" not in first.private_key
    with pytest.raises(secrets.SecretError):
        secrets.decrypt(first.private_key, context=second.secret_context)


def test_a_selector_is_checked_and_unique(domain, owner):
    with pytest.raises(ValidationError, match="selector"):
        dkim_keys.dkim_key_create(
            domain=domain, algorithm="rsa", selector="bad_selector!", actor=owner
        )
    dkim_keys.dkim_key_create(domain=domain, algorithm="rsa", selector="s1", actor=owner)
    with pytest.raises(ValidationError, match="already used"):
        dkim_keys.dkim_key_create(domain=domain, algorithm="ed25519", selector="S1", actor=owner)


def test_rsa_below_2048_bits_is_refused(domain, owner):
    with pytest.raises(ValidationError, match="2048"):
        dkim_keys.dkim_key_create(domain=domain, algorithm="rsa", bits=1024, actor=owner)


def test_a_viewer_changes_nothing(domain, viewer):
    with pytest.raises(PermissionDenied):
        dkim_keys.dkim_key_create(domain=domain, algorithm="rsa", actor=viewer)
    with pytest.raises(PermissionDenied):
        dkim_keys.dkim_selector_add(domain=domain, selector="google", note="", actor=viewer)


def test_the_dkim_check_watches_keys_and_other_senders_selectors(
    updatable, owner, resolver, settings
):
    from dns_records.context import check_contexts
    from dns_records.runner import run_domain_checks

    settings.MAILSEC_DKIM_ACTIVATE_AFTER_MINUTES = 0
    generated_dkim_key(updatable, owner)
    _advance(resolver, timezone.now())
    _advance(resolver, timezone.now())
    dkim_keys.dkim_selector_add(domain=updatable, selector="google", note="Workspace", actor=owner)
    dkim_keys.dkim_selector_add(domain=updatable, selector="weak", note="old ESP", actor=owner)
    context = check_contexts([updatable])[updatable.pk]
    (outcome,) = run_domain_checks(context, resolver, only={"dkim"})
    rows = {row["selector"]: row for row in outcome.details["keys"]}
    assert rows["google"]["status"] == "ok"
    assert rows["weak"]["status"] == "warning"
    assert outcome.status == "warning"


def test_an_update_server_outside_the_allowed_networks_is_not_contacted(domain, owner, settings):
    settings.MAILSEC_PROBE_ALLOW_NETWORKS = []
    dkim_keys.dns_update_set(
        domain=domain, server="127.0.0.19:53", zone=ZONE, tsig_name=TSIG[0],
        tsig_algorithm=TSIG[1], tsig_secret=base64.b64decode(TSIG[2]), actor=owner,
    )  # fmt: skip
    key = generated_dkim_key(domain, owner)
    outcome = dkim_keys.dkim_key_publish(key=key)
    assert not outcome.sent and "MAILSEC_PROBE_ALLOW_NETWORKS" in outcome.error


def test_a_wrong_tsig_secret_is_refused_by_the_server(domain, owner, dkim_knot):
    dkim_keys.dns_update_set(
        domain=domain, server=dkim_knot.nameserver, zone=ZONE, tsig_name=TSIG[0],
        tsig_algorithm=TSIG[1], tsig_secret=os.urandom(32), actor=owner,
    )  # fmt: skip
    key = generated_dkim_key(domain, owner)
    outcome = dkim_keys.dkim_key_publish(key=key)
    assert not outcome.sent and "refused the TSIG key mailsec-update" in outcome.error
    domain.dns_update.refresh_from_db()
    assert "refused the TSIG key" in domain.dns_update.last_error


def test_hosts_get_opendkim_files_for_the_active_keys_only(updatable, owner, resolver, settings):
    settings.MAILSEC_DKIM_ACTIVATE_AFTER_MINUTES = 0
    active = generated_dkim_key(updatable, owner, algorithm="ed25519")
    _advance(resolver, timezone.now())
    _advance(resolver, timezone.now())
    pending = generated_dkim_key(updatable, owner)
    files = {f.path: f for f in dkim_keys.opendkim_files(domain_ids=[updatable.pk])}
    key_table = "".join(f.content.decode() for path, f in files.items() if "KeyTable" in path)
    assert f"{active.selector}._domainkey.{ZONE}" in key_table
    assert pending.selector not in key_table
    key_file = next(f for path, f in files.items() if path.endswith(f"{active.selector}.private"))
    assert key_file.mode == 0o600 and b"PRIVATE KEY" in key_file.content


@pytest.mark.parametrize("algorithm", ["rsa", "ed25519"])
def test_signing_is_proven_against_the_published_record(updatable, owner, resolver, algorithm):
    key = generated_dkim_key(updatable, owner, algorithm=algorithm)
    assert dkim_keys.dkim_key_verify_signing(key_id=key.pk, resolver=resolver) is True
    key.refresh_from_db()
    assert key.signing_verified is True and key.signing_checked_at is not None
    dkim_keys._send(updatable.dns_update, delete=[key.dns_name])
    assert dkim_keys.dkim_key_verify_signing(key_id=key.pk, resolver=resolver) is False
    key.refresh_from_db()
    assert key.signing_error


def test_a_lookup_failure_leaves_the_signing_proof_unknown(domain, owner):
    key = generated_dkim_key(domain, owner)
    refused = Resolver(nameservers=[parse_nameserver("127.0.0.1:9")], timeout=0.3)
    assert dkim_keys.dkim_key_verify_signing(key_id=key.pk, resolver=refused) is None
    key.refresh_from_db()
    assert key.signing_verified is None and key.signing_checked_at is not None


def test_a_database_dump_holds_no_dkim_private_key(updatable, owner):
    from io import StringIO

    from django.core.management import call_command

    keys = [
        generated_dkim_key(updatable, owner),
        generated_dkim_key(updatable, owner, algorithm="ed25519"),
    ]
    out = StringIO()
    call_command("dumpdata", "dns_records", stdout=out)
    dump = out.getvalue()
    for key in keys:
        pem = secrets.decrypt(key.private_key, context=key.secret_context)
        body = b"".join(pem.splitlines()[1:-1]).decode()
        assert body[:40] not in dump and "PRIVATE KEY" not in dump
    assert base64.b64decode(TSIG[2]).hex() not in dump and TSIG[2] not in dump
