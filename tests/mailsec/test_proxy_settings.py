"""MAILSEC_TRUSTED_PROXIES is read strictly, and the variable it replaced is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.mailsec.test_settings import PRODUCTION_ENV, _manage

PRINT_PROXY = (
    "from django.conf import settings; "
    "print([str(n) for n in settings.MAILSEC_TRUSTED_PROXIES], "
    "getattr(settings, 'SECURE_PROXY_SSL_HEADER', None))"
)


@pytest.fixture
def var_dir(tmp_path: Path) -> Path:
    return tmp_path / "var"


def test_trusted_proxies_turn_on_https_detection_from_them(var_dir):
    env = {**PRODUCTION_ENV, "MAILSEC_TRUSTED_PROXIES": "10.0.0.5, 172.16.0.0/12"}
    result = _manage("shell", "-c", PRINT_PROXY, env=env, var=var_dir)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == (
        "['10.0.0.5/32', '172.16.0.0/12'] ('HTTP_X_FORWARDED_PROTO', 'https')"
    )


def test_without_trusted_proxies_no_forwarded_header_is_believed(var_dir):
    result = _manage("shell", "-c", PRINT_PROXY, env=PRODUCTION_ENV, var=var_dir)
    assert result.stdout.strip().splitlines()[-1] == "[] None"


@pytest.mark.parametrize("value", ["proxy.example", "10.0.0.1/8", "10.0.0.1,,10.0.0.2"])
def test_a_malformed_trusted_proxy_stops_start_up(var_dir, value):
    env = {**PRODUCTION_ENV, "MAILSEC_TRUSTED_PROXIES": value}
    result = _manage("check", env=env, var=var_dir)
    assert result.returncode != 0
    assert "MAILSEC_TRUSTED_PROXIES" in result.stderr


def test_the_replaced_secure_proxy_ssl_header_variable_is_refused(var_dir):
    env = {**PRODUCTION_ENV, "MAILSEC_SECURE_PROXY_SSL_HEADER": "1"}
    result = _manage("check", env=env, var=var_dir)
    assert result.returncode != 0
    assert "replaced by MAILSEC_TRUSTED_PROXIES" in result.stderr
