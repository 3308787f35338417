"""Generated DMARC aggregate reports (RFC 7489 XML) of any size, for the storage tests."""

from __future__ import annotations

BEGIN = 1764460800  # 2025-11-30 00:00:00 UTC

HEAD = """<?xml version="1.0" encoding="UTF-8"?>
<feedback>
  <report_metadata>
    <org_name>{reporter}</org_name>
    <email>dmarc@{reporter}</email>
    <report_id>{report_id}</report_id>
    <date_range><begin>{begin}</begin><end>{end}</end></date_range>
  </report_metadata>
  <policy_published>
    <domain>{domain}</domain><adkim>r</adkim><aspf>r</aspf><p>none</p><sp>none</sp><pct>100</pct>
  </policy_published>
"""
RECORD = """  <record>
    <row><source_ip>{ip}</source_ip><count>{count}</count>
      <policy_evaluated><disposition>none</disposition><dkim>{dkim}</dkim><spf>fail</spf></policy_evaluated>
    </row>
    <identifiers><header_from>{domain}</header_from></identifiers>
    <auth_results>
      <dkim><domain>{domain}</domain><selector>s{selector}</selector><result>{dkim}</result></dkim>
      <spf><domain>{domain}</domain><result>fail</result></spf>
    </auth_results>
  </record>
"""


def aggregate_xml(
    records: int,
    *,
    report_id: str = "generated-1",
    domain: str = "example.com",
    reporter: str = "generator.example",
    begin: int = BEGIN,
) -> bytes:
    """A report of `records` records from distinct 10.x.y.z sources; counts 1 to 5, every
    third record failing DKIM, two selectors."""
    parts = [
        HEAD.format(
            reporter=reporter, report_id=report_id, begin=begin, end=begin + 86399, domain=domain
        )
    ]
    for i in range(records):
        parts.append(
            RECORD.format(
                ip=f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}",
                count=1 + i % 5,
                dkim="fail" if i % 3 == 2 else "pass",
                selector=i % 2,
                domain=domain,
            )
        )
    parts.append("</feedback>\n")
    return "".join(parts).encode()


def expected_totals(records: int) -> tuple[int, int]:
    """(messages, DMARC-passing messages) of `aggregate_xml(records)`."""
    messages = sum(1 + i % 5 for i in range(records))
    passing = sum(1 + i % 5 for i in range(records) if i % 3 != 2)
    return messages, passing
