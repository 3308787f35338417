"""DKIM key generation rates, and mailsec's dkim check against dkimpy: `make bench` runs this."""

import sys

from dkim_bench.cli import main  # bench/, this script's folder, is first on sys.path

if __name__ == "__main__":
    sys.exit(main())
