"""The RFC 7208 test suite, evaluated through our Resolver against Knot serving each scenario."""

from __future__ import annotations

from pathlib import Path

import pytest

from dns_records.resolver import Resolver
from dns_records.spf_eval import evaluate_spf
from mailsec.env import parse_nameserver
from tests.servers import KnotServer, missing
from tests.spf_suite import SUITE, Scenario, SpfCase, load_suite

pytestmark = pytest.mark.knot

SUITE_ADDRESS = "127.0.0.12"
# The driver's stand-in explanation, so that the suite's `explanation: DEFAULT` can be checked.
DEFAULT_EXPLANATION = "DEFAULT"

SCENARIOS: dict[str, Scenario] = {s.slug: s for s in load_suite()} if SUITE.exists() else {}


def _params() -> list[object]:
    if not SCENARIOS:
        return [pytest.param(None, id="suite-not-found")]
    return [pytest.param(case, id=case.id) for s in SCENARIOS.values() for case in s.cases]


# Scenarios reuse names (example.com) with different data, so each gets its own Knot; the cases
# run in scenario order, so each server starts once (about 50 ms).
class ScenarioServers:
    """One Knot at a time, serving the scenario the running case belongs to."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.current: tuple[str, KnotServer] | None = None

    def serve(self, scenario: Scenario) -> KnotServer:
        if self.current is not None and self.current[0] == scenario.slug:
            return self.current[1]
        self.stop()
        directory = self.directory / scenario.slug
        source = directory / "source"
        zone_files = scenario.zones().write(source)
        (directory / "knot").mkdir()
        server = KnotServer(
            directory / "knot", address=SUITE_ADDRESS, source=source, zone_files=zone_files
        )
        self.current = (scenario.slug, server)
        server.start()
        return server

    def stop(self) -> None:
        if self.current is not None:
            self.current[1].stop()
            self.current = None


@pytest.fixture(scope="module")
def scenario_servers(tmp_path_factory):
    servers = ScenarioServers(tmp_path_factory.mktemp("spf-suite"))
    try:
        yield servers
    finally:
        servers.stop()


@pytest.mark.parametrize("case", _params())
def test_rfc7208_suite(scenario_servers: ScenarioServers, case: SpfCase | None) -> None:
    if case is None:
        missing(f"the RFC 7208 suite is not at {SUITE} (set MAILSEC_SPF_SUITE)")
        return
    knot = scenario_servers.serve(SCENARIOS[case.scenario])
    resolver = Resolver(nameservers=[parse_nameserver(knot.nameserver)], timeout=2)
    evaluation = evaluate_spf(
        case.host,
        case.domain,
        resolver=resolver,
        sender=case.sender,
        helo=case.helo,
        default_explanation=DEFAULT_EXPLANATION,
    )
    assert evaluation.result in case.results, (
        f"{case.id} (RFC 7208 {case.spec}): {evaluation.result} ({evaluation.explanation}),"
        f" expected {' or '.join(case.results)}"
    )
    if case.explanation is not None:
        assert evaluation.explanation == case.explanation
