"""Settings for mailsec, read from the environment (see README and .env.example).

With nothing set except MAILSEC_DEBUG=1 (as `make run` does) everything runs locally: SQLite
under var/, a file-system Celery broker, and a secret key and an encryption key generated once in
var/secret_key and var/encryption_keys. Production sets DATABASE_URL, CELERY_BROKER_URL,
MAILSEC_SECRET_KEY, MAILSEC_ENCRYPTION_KEYS and MAILSEC_ALLOWED_HOSTS.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP  # type: ignore[import-not-found,unused-ignore]

from mailsec.env import (
    env_bool,
    env_database,
    env_encryption_keys,
    env_float,
    env_int,
    env_list,
    env_nameservers,
    env_networks,
    env_secret_key,
    env_str,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("MAILSEC_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("MAILSEC_DEBUG", False)
# MAILSEC_SECRET_KEY, else the local key that debug (`make run`) generates on first run, so
# commands run later without debug sign and hash with the same key. With neither the key is
# empty, and the mailsec.E001 system check, the WSGI app and Celery refuse to start.
LOCAL_SECRET_KEY_FILE = VAR_DIR / "secret_key"
SECRET_KEY = env_secret_key("MAILSEC_SECRET_KEY", local_file=LOCAL_SECRET_KEY_FILE, create=DEBUG)
# Earlier keys, still accepted while a rotation settles (sessions, signatures, API tokens).
SECRET_KEY_FALLBACKS = env_list("MAILSEC_SECRET_KEY_FALLBACKS")
# Keys for secrets at rest (DKIM private keys, ...), by id: the first encrypts, all decrypt.
# MAILSEC_ENCRYPTION_KEYS, else the local file that debug generates beside the secret key. With
# neither there is no key: encrypting refuses, and once the database holds secrets the
# mailsec.E003 system check, the WSGI app and Celery refuse to start.
LOCAL_ENCRYPTION_KEYS_FILE = VAR_DIR / "encryption_keys"
MAILSEC_ENCRYPTION_KEYS: dict[str, bytes] = env_encryption_keys(
    "MAILSEC_ENCRYPTION_KEYS", local_file=LOCAL_ENCRYPTION_KEYS_FILE, create=DEBUG
)

ALLOWED_HOSTS = env_list("MAILSEC_ALLOWED_HOSTS") or (
    ["127.0.0.1", "localhost", "[::1]"] if DEBUG else []
)
CSRF_TRUSTED_ORIGINS = env_list("MAILSEC_CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "django_celery_beat",
    "axes",
    "mailsec",
    "dns_records",
    "reports",
    "hosts",
    "blocklists",
    "alerts",
    "dashboard",
]

MIDDLEWARE = [
    # First: what follows reads the scheme and client address it vouches for.
    "mailsec.client_ip.ForwardedHeadersMiddleware",
    # Next: it refuses malformed input before anything reads it, and reshapes every error
    # answered under /api/ by any layer below it into the API's JSON error shape.
    "mailsec.middleware.RequestGuardMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "mailsec.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "mailsec.urls"
WSGI_APPLICATION = "mailsec.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.csp",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": env_database(
        "DATABASE_URL", default_sqlite=VAR_DIR / "mailsec.sqlite3", base_dir=BASE_DIR
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The worker process of the tests must open the same file as the test runner.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard:home"
LOGOUT_REDIRECT_URL = "login"

# Login throttling (see mailsec.auth.LoginThrottleHandler): five failures for one username from
# one client address lock that pair out for fifteen minutes, and fifteen for one username from
# any addresses lock the username. A success clears only the succeeding user's failures.
AXES_FAILURE_LIMIT = env_int("MAILSEC_LOGIN_FAILURE_LIMIT", 5, minimum=1)
MAILSEC_LOGIN_USERNAME_FAILURE_LIMIT = env_int(
    "MAILSEC_LOGIN_USERNAME_FAILURE_LIMIT", 3 * AXES_FAILURE_LIMIT, minimum=1
)
AXES_COOLOFF_TIME = timedelta(minutes=15)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"], "username"]
AXES_HANDLER = "mailsec.auth.LoginThrottleHandler"
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_VERBOSE = False

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

# Content-Security-Policy: no inline script or style anywhere; scripts carry the request nonce.
SECURE_CSP: dict[str, list[str]] = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:"],
    "connect-src": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
    "form-action": [CSP.SELF],
    "base-uri": [CSP.NONE],
    "object-src": [CSP.NONE],
}

SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
if not DEBUG:
    SECURE_SSL_REDIRECT = env_bool("MAILSEC_SECURE_SSL_REDIRECT", True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
    SECURE_HSTS_SECONDS = env_int("MAILSEC_HSTS_SECONDS", 31536000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = False
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
# Behind the TLS proxy every request comes from its address. X-Forwarded-For (the client's
# address, for login throttling) and X-Forwarded-Proto (https) are believed only from these
# proxies; mailsec.client_ip removes them from anyone else.
MAILSEC_TRUSTED_PROXIES = env_networks("MAILSEC_TRUSTED_PROXIES")
if env_bool("MAILSEC_SECURE_PROXY_SSL_HEADER", False):
    raise ImproperlyConfigured(
        "MAILSEC_SECURE_PROXY_SSL_HEADER is replaced by MAILSEC_TRUSTED_PROXIES: set it to the "
        "proxy's address or network (forwarded headers are believed from there only) and remove "
        "MAILSEC_SECURE_PROXY_SSL_HEADER"
    )
if MAILSEC_TRUSTED_PROXIES:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
AXES_CLIENT_IP_CALLABLE = "mailsec.client_ip.client_ip"
SILENCED_SYSTEM_CHECKS = ["security.W021"]  # HSTS preload is the operator's decision.

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "mailsec.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["mailsec.permissions.TokenScopePermission"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "mailsec.api.pagination.BoundedPagination",
    "PAGE_SIZE": 100,
    "EXCEPTION_HANDLER": "mailsec.api.errors.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"]
    + (["rest_framework.renderers.BrowsableAPIRenderer"] if DEBUG else []),
}
SPECTACULAR_SETTINGS = {
    "TITLE": "mailsec API",
    "DESCRIPTION": "Mail-server security: domains, checks, background tasks.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "ENUM_NAME_OVERRIDES": {
        "CheckStatusEnum": "dns_records.status.STATUS_CHOICES",
        "ListingStatusEnum": "blocklists.models.LISTING_CHOICES",
        "BlocklistKindEnum": "blocklists.models.KIND_CHOICES",
        "ChannelKindEnum": "alerts.models.ChannelKind",
    },
    # The docs page's assets are vendored by drf-spectacular-sidecar: no CDN, CSP-friendly.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# Celery. Without a broker URL, a file-system broker under var/ needs no server.
_broker = env_str("CELERY_BROKER_URL") or env_str("REDIS_URL")
if _broker:
    CELERY_BROKER_URL = _broker
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {}
else:
    _queue_dir = VAR_DIR / "broker"
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir / "queue"),
        "data_folder_out": str(_queue_dir / "queue"),
        "control_folder": str(_queue_dir / "control"),
        "store_processed": False,
    }
    for _sub in ("queue", "control"):
        (_queue_dir / _sub).mkdir(parents=True, exist_ok=True)

# Soft and hard limits for any task that does not set its own (every mailsec task does).
CELERY_TASK_SOFT_TIME_LIMIT = 300
CELERY_TASK_TIME_LIMIT = 360
# A message unacknowledged this long is handed to another worker: it must exceed every hard
# time limit, or a long task would run twice.
CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"] = 3600
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True  # task state lives in mailsec.TaskRun, per organisation
CELERY_TASK_DEFAULT_QUEUE = env_str("MAILSEC_CELERY_QUEUE", "mailsec")
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_WORKER_SEND_TASK_EVENTS = False
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"

# DNS: every lookup the product makes goes to these servers when set.
MAILSEC_DNS_NAMESERVERS = env_nameservers("MAILSEC_DNS_NAMESERVERS")
MAILSEC_DNS_TIMEOUT = env_float("MAILSEC_DNS_TIMEOUT", 5.0)
MAILSEC_INGEST_ADDRESSES = env_list("MAILSEC_INGEST_ADDRESSES")
# The SMTP report listener (manage.py ingest_smtp): where it listens, how long a client may be
# idle (and a message's data may take), recipients per message and connections at once, and
# an optional certificate for STARTTLS. It accepts mail for MAILSEC_INGEST_ADDRESSES only
# (under debug with none set: dmarc@localhost and tls-reports@localhost).
MAILSEC_INGEST_LISTEN = env_str("MAILSEC_INGEST_LISTEN", "127.0.0.1:2525")
MAILSEC_INGEST_TIMEOUT_SECONDS = env_int("MAILSEC_INGEST_TIMEOUT_SECONDS", 300, minimum=5)
MAILSEC_INGEST_MAX_RECIPIENTS = env_int("MAILSEC_INGEST_MAX_RECIPIENTS", 10, minimum=1)
MAILSEC_INGEST_MAX_CONNECTIONS = env_int("MAILSEC_INGEST_MAX_CONNECTIONS", 50, minimum=1)
MAILSEC_INGEST_TLS_CERT = env_str("MAILSEC_INGEST_TLS_CERT")
MAILSEC_INGEST_TLS_KEY = env_str("MAILSEC_INGEST_TLS_KEY")
# IMAP mailboxes holding reports are polled this often.
MAILSEC_IMAP_POLL_INTERVAL_MINUTES = env_int("MAILSEC_IMAP_POLL_INTERVAL_MINUTES", 5, minimum=1)
MAILSEC_PROBE_ALLOW_NETWORKS = env_networks("MAILSEC_PROBE_ALLOW_NETWORKS")
# Live probes of managed hosts (hosts.probe): each host is probed this often by beat.
MAILSEC_PROBE_INTERVAL_MINUTES = env_int("MAILSEC_PROBE_INTERVAL_MINUTES", 360, minimum=5)
# /metrics (Prometheus): answered to `Authorization: Bearer <token>` when a token is set, or to
# clients inside these networks (empty: loopback only; `none`: the token only).
MAILSEC_METRICS_TOKEN = env_str("MAILSEC_METRICS_TOKEN")
_metrics_networks = env_str("MAILSEC_METRICS_ALLOW_NETWORKS", "127.0.0.0/8,::1/128")
MAILSEC_METRICS_ALLOW_NETWORKS = (
    []
    if _metrics_networks.lower() == "none"
    else env_networks(
        "MAILSEC_METRICS_ALLOW_NETWORKS", {"MAILSEC_METRICS_ALLOW_NETWORKS": _metrics_networks}
    )
)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("MAILSEC_LOG_LEVEL", "INFO").upper()},
    # django-axes logs every successful login at INFO; lockouts are warnings and still show.
    "loggers": {"axes": {"level": "WARNING"}},
}

# Scheduled DNS checks: each domain is re-checked this often, spread over the interval.
MAILSEC_CHECK_INTERVAL_MINUTES = env_int("MAILSEC_CHECK_INTERVAL_MINUTES", 360, minimum=5)
MAILSEC_CHECK_CONCURRENCY = env_int("MAILSEC_CHECK_CONCURRENCY", 32, minimum=1, maximum=512)
MAILSEC_CHECK_HISTORY_DAYS = env_int("MAILSEC_CHECK_HISTORY_DAYS", 90, minimum=1)
# One domain's checks get this long in all; lookups after it answer "out of time" at once, so a
# zone that never answers holds a worker this long at most, not the batch's whole time limit. At
# most 110: a "check now" task is stopped at 120 seconds.
MAILSEC_CHECK_DOMAIN_BUDGET_SECONDS = env_int(
    "MAILSEC_CHECK_DOMAIN_BUDGET_SECONDS", 60, minimum=1, maximum=110
)
# Abuse limits per organisation: domains it may hold, and "check now" requests a minute (a
# request that joins a check already queued is free).
MAILSEC_DOMAINS_PER_ORGANISATION = env_int("MAILSEC_DOMAINS_PER_ORGANISATION", 5000, minimum=1)
MAILSEC_CHECK_NOW_PER_MINUTE = env_int("MAILSEC_CHECK_NOW_PER_MINUTE", 30, minimum=1)
CELERY_BEAT_SCHEDULE = {
    "queue-due-domain-checks": {"task": "dns_records.tasks.queue_due_checks", "schedule": 60.0},
    "prune-check-history": {"task": "dns_records.tasks.prune_check_history", "schedule": 86400.0},
    "reap-task-runs": {"task": "mailsec.tasks.reap_task_runs", "schedule": 300.0},
    "prune-task-runs": {"task": "mailsec.tasks.prune_task_runs", "schedule": 86400.0},
    "advance-dkim-keys": {"task": "dns_records.tasks.advance_dkim_keys", "schedule": 300.0},
    "queue-due-imap-polls": {"task": "reports.tasks.queue_imap_polls", "schedule": 60.0},
    "queue-due-host-probes": {"task": "hosts.tasks.queue_due_probes", "schedule": 300.0},
    "sweep-pending-report-messages": {
        "task": "reports.tasks.sweep_pending_messages",
        "schedule": 120.0,
    },
    "prune-reports": {"task": "reports.tasks.prune_reports", "schedule": 86400.0},
    "resolve-report-sources": {"task": "reports.tasks.resolve_sources", "schedule": 300.0},
    "queue-due-blocklist-polls": {"task": "blocklists.tasks.queue_due_polls", "schedule": 60.0},
    "purge-expired-blacklist-entries": {
        "task": "blocklists.tasks.purge_expired_entries",
        "schedule": 3600.0,
    },
    "check-host-drift": {"task": "hosts.tasks.check_drift", "schedule": 3600.0},
    "evaluate-alerts": {"task": "alerts.tasks.evaluate_alerts", "schedule": 60.0},
    "send-alert-digests": {"task": "alerts.tasks.send_digests", "schedule": 3600.0},
}
# Blocklists: comma lists of zones replacing the built-in defaults (blocklists/zones.py) for
# organisations polled for the first time; how often each organisation is polled; questions in
# flight at once.
MAILSEC_DNSBL_IP_ZONES = env_list("MAILSEC_DNSBL_IP_ZONES")
MAILSEC_DNSBL_DOMAIN_ZONES = env_list("MAILSEC_DNSBL_DOMAIN_ZONES")
MAILSEC_DNSBL_INTERVAL_MINUTES = env_int("MAILSEC_DNSBL_INTERVAL_MINUTES", 60, minimum=5)
MAILSEC_DNSBL_CONCURRENCY = env_int("MAILSEC_DNSBL_CONCURRENCY", 256, minimum=1, maximum=4096)
# Extra CA certificates trusted (besides the system's) when fetching MTA-STS policies: for a
# private PKI.
MAILSEC_TLS_CA_FILE = env_str("MAILSEC_TLS_CA_FILE")
# Alerts: consecutive runs a fail must hold before it is notified; the outgoing mail server
# (smtp://user:pass@host:port, smtp+tls:// or smtp+ssl://; read by alerts.email_url; else
# Django's EMAIL_* defaults); the sender of alerts and digests.
MAILSEC_ALERT_CONFIRM_RUNS = env_int("MAILSEC_ALERT_CONFIRM_RUNS", 2, minimum=1, maximum=100)
MAILSEC_EMAIL_URL = env_str("MAILSEC_EMAIL_URL")
DEFAULT_FROM_EMAIL = env_str("MAILSEC_EMAIL_FROM") or "mailsec@localhost"
# The port MTA-STS policies are fetched from: 443 by RFC 8461; only the tests' policy server,
# which runs unprivileged, changes it (tests/settings.py and the test worker's settings).
MAILSEC_MTA_STS_HTTPS_PORT = 443

# DKIM keys: a published key becomes active only after its record has been visible this long
# (receivers' cached "no such record" answers expire first); a replaced key's record stays this
# many days so mail signed before the switch still verifies.
MAILSEC_DKIM_ACTIVATE_AFTER_MINUTES = env_int("MAILSEC_DKIM_ACTIVATE_AFTER_MINUTES", 60, minimum=0)
MAILSEC_DKIM_GRACE_DAYS = env_int("MAILSEC_DKIM_GRACE_DAYS", 7, minimum=1)

# Reports (DMARC aggregate, SMTP TLS). The largest message or file accepted by any way in, and
# the largest a report may grow to once decompressed.
MAILSEC_REPORT_MAX_MESSAGE_BYTES = env_int(
    "MAILSEC_REPORT_MAX_MESSAGE_BYTES", 50 * 1024 * 1024, minimum=1024
)
MAILSEC_REPORT_MAX_DECOMPRESSED_BYTES = env_int(
    "MAILSEC_REPORT_MAX_DECOMPRESSED_BYTES", 1024 * 1024 * 1024, minimum=1024
)
# Reports, their records and raw messages are deleted this many days after their period ends.
MAILSEC_REPORT_RETENTION_DAYS = env_int("MAILSEC_REPORT_RETENTION_DAYS", 400, minimum=1)
# Offline IP-to-ASN and IP-to-country databases (.mmdb) installed by `manage.py
# install_ip_database`; empty: var/ip-databases/. Never downloaded by mailsec.
MAILSEC_IP_DATABASE_DIR = env_str("MAILSEC_IP_DATABASE_DIR")
