"""Throughput of mailsec's SPF + DMARC + MX checks against checkdmarc: `make bench` runs this."""

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mailsec.settings")
os.environ.setdefault("MAILSEC_DEBUG", "1")

from throughput.cli import main  # noqa: E402  (needs the repository on sys.path first)

if __name__ == "__main__":
    sys.exit(main())
