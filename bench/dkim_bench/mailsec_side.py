"""mailsec's side: the `dkim` check through the runner's `iter_many`, on a thread pool."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .fixtures import FixtureRecord
from .verdicts import Verdict, Verdicts, mailsec_label

if TYPE_CHECKING:
    from dns_records.checks import CheckContext
    from dns_records.resolver import Resolver

# dns_records.runner is imported inside the function: only after django.setup().

ONLY = frozenset({"dkim"})
REPORT_ADDRESS = "reports@mailsec.test"

type Contexts = list[tuple[str, CheckContext]]


def mailsec_contexts(records: Sequence[FixtureRecord]) -> Contexts:
    """One context per domain, carrying its selectors' expectations in the fixtures' order."""
    from dns_records.checks import CheckContext, DkimExpectation

    expected: dict[str, list[DkimExpectation]] = defaultdict(list)
    for r in records:
        expected[r.domain].append(DkimExpectation(r.selector, r.state, r.value, r.algorithm))
    return [
        (domain, CheckContext(domain, REPORT_ADDRESS, dkim=tuple(dkim)))
        for domain, dkim in expected.items()
    ]


def mailsec_run(contexts: Contexts, resolver: Resolver, workers: int) -> tuple[float, Verdicts]:
    """iter_many on every context with `workers` threads: its wall time, and each row's verdict.

    The time covers iter_many only; reading the rows out of the outcomes comes after.
    """
    from dns_records.runner import iter_many

    start = time.perf_counter()
    outcomes = list(iter_many(contexts, resolver, only=ONLY, max_workers=workers))
    elapsed = time.perf_counter() - start
    verdicts: Verdicts = {}
    for domain, (outcome,) in outcomes:
        for row in outcome.details["keys"]:
            status = str(row["status"])
            verdicts[domain, row["selector"]] = Verdict(
                mailsec_label(status), status, str(row["message"])
            )
    return elapsed, verdicts
