"""mailsec's report parser against parsedmarc, records per second and peak memory: `make bench` runs this."""

import sys

from report_bench.cli import main  # bench/, this script's folder, is first on sys.path

if __name__ == "__main__":
    sys.exit(main())
