import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mailsec.settings")
application = get_wsgi_application()

from mailsec.checks import (  # noqa: E402  (needs the settings loaded)
    refuse_missing_encryption_key,
    refuse_missing_secret_key,
)

refuse_missing_secret_key()
refuse_missing_encryption_key()
