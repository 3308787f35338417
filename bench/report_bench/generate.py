"""Generated aggregate reports: N records of the mix a large receiver sends, written as .xml.gz.

Deterministic for a seed: the same N always gives the same bytes, so both sides parse the same
file and runs compare. Records vary the way real ones do: IPv4 and IPv6 sources, counts from 1
to a few hundred, every disposition, aligned and unaligned results, one or two DKIM results
with selectors, SPF with and without scope, an override reason now and then.
"""

from __future__ import annotations

import gzip
import random
from collections.abc import Iterator
from pathlib import Path

HEADER = """<?xml version="1.0" encoding="UTF-8" ?>
<feedback>
  <version>1.0</version>
  <report_metadata>
    <org_name>bench.example</org_name>
    <email>noreply-dmarc@bench.example</email>
    <report_id>bench-{records}-{seed}</report_id>
    <date_range>
      <begin>1718236800</begin>
      <end>1718323199</end>
    </date_range>
  </report_metadata>
  <policy_published>
    <domain>example.com</domain>
    <adkim>r</adkim>
    <aspf>r</aspf>
    <p>quarantine</p>
    <sp>none</sp>
    <pct>100</pct>
    <np>reject</np>
  </policy_published>
"""
RECORD = """  <record>
    <row>
      <source_ip>{ip}</source_ip>
      <count>{count}</count>
      <policy_evaluated>
        <disposition>{disposition}</disposition>
        <dkim>{dkim}</dkim>
        <spf>{spf}</spf>{reason}
      </policy_evaluated>
    </row>
    <identifiers>
      <header_from>{header_from}</header_from>
      <envelope_from>{envelope_from}</envelope_from>
    </identifiers>
    <auth_results>{dkim_results}
      <spf>
        <domain>{envelope_from}</domain>{scope}
        <result>{spf_result}</result>
      </spf>
    </auth_results>
  </record>
"""
DKIM = """
      <dkim>
        <domain>{domain}</domain>
        <selector>{selector}</selector>
        <result>{result}</result>
      </dkim>"""
REASON = """
        <reason>
          <type>{type}</type>
          <comment>{comment}</comment>
        </reason>"""


def _records(records: int, seed: int) -> Iterator[str]:
    rng = random.Random(seed)  # noqa: S311  (fixture data, not secrets)
    for _ in range(records):
        if rng.random() < 0.2:
            ip = f"2001:db8:{rng.randrange(65536):x}:{rng.randrange(65536):x}::{rng.randrange(1, 65536):x}"
        else:
            ip = f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        dkim = rng.choice(("pass", "pass", "pass", "fail"))
        spf = rng.choice(("pass", "pass", "fail"))
        aligned = dkim == "pass" or spf == "pass"
        disposition = "none" if aligned else rng.choice(("none", "quarantine", "reject"))
        header_from = rng.choice(("example.com", "example.com", "news.example.com"))
        envelope_from = rng.choice((header_from, "bounces.esp.example", "mailer.example.net"))
        dkim_results = DKIM.format(
            domain=header_from if dkim == "pass" else "esp.example",
            selector=rng.choice(("s1", "s2", "google", "selector1", "k1")),
            result=dkim if dkim == "pass" else rng.choice(("fail", "none", "neutral")),
        )
        if rng.random() < 0.3:
            dkim_results += DKIM.format(
                domain="esp.example", selector="esp2024", result=rng.choice(("pass", "fail"))
            )
        reason = ""
        if rng.random() < 0.05:
            reason = REASON.format(type="forwarded", comment="arc=pass")
        yield RECORD.format(
            ip=ip,
            count=rng.choice((1, 1, 1, 2, 3, 5, 12, 40, 250)),
            disposition=disposition,
            dkim=dkim,
            spf=spf,
            reason=reason,
            header_from=header_from,
            envelope_from=envelope_from,
            dkim_results=dkim_results,
            scope="\n        <scope>mfrom</scope>" if rng.random() < 0.5 else "",
            spf_result=spf if spf == "pass" else rng.choice(("fail", "softfail", "neutral")),
        )


def write_report(path: Path, records: int, seed: int = 9) -> Path:
    """Write the report of `records` records to `path` (.xml.gz) unless it is already there."""
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    with gzip.open(partial, "wt", encoding="utf-8", compresslevel=6) as out:
        out.write(HEADER.format(records=records, seed=seed))
        batch: list[str] = []
        for record in _records(records, seed):
            batch.append(record)
            if len(batch) >= 5000:
                out.write("".join(batch))
                batch.clear()
        out.write("".join(batch))
        out.write("</feedback>\n")
    partial.rename(path)
    return path
