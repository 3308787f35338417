"""Key generation: keys per second for each algorithm, with `dns_records.dkim.generate_key`."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

from dns_records.dkim import DkimAlgorithm, GeneratedKey, generate_key


@dataclass(frozen=True)
class KeyKind:
    """An algorithm and size mailsec generates, and how many keys a round makes of it."""

    label: str
    algorithm: DkimAlgorithm
    bits: int | None
    per_round: int


RSA_2048 = KeyKind("RSA 2048", DkimAlgorithm.RSA, 2048, 40)
ED25519 = KeyKind("Ed25519", DkimAlgorithm.ED25519, None, 1000)
KINDS = (
    RSA_2048,
    KeyKind("RSA 3072", DkimAlgorithm.RSA, 3072, 10),
    KeyKind("RSA 4096", DkimAlgorithm.RSA, 4096, 3),  # about half a second each: a few
    ED25519,
)


@dataclass
class KindTimings:
    """One kind's generated keys: the wall time of each, and each round's wall and CPU time."""

    kind: KeyKind
    key_seconds: list[float] = field(default_factory=list)
    round_seconds: list[float] = field(default_factory=list)
    round_cpu_seconds: list[float] = field(default_factory=list)
    keys: list[GeneratedKey] = field(default_factory=list)

    @property
    def mean_ms(self) -> float:
        return 1000 * sum(self.key_seconds) / len(self.key_seconds)

    @property
    def keys_per_second(self) -> float:
        return len(self.key_seconds) / sum(self.key_seconds)

    def round_rates(self) -> list[float]:
        """Keys per second in each round."""
        return [self.kind.per_round / seconds for seconds in self.round_seconds]

    def summary(self) -> dict[str, object]:
        rates = self.round_rates()
        return {
            "keys": len(self.key_seconds),
            "keys_per_second": round(self.keys_per_second, 2),
            "mean_ms_per_key": round(self.mean_ms, 3),
            "median_ms_per_key": round(1000 * statistics.median(self.key_seconds), 3),
            "slowest_ms_per_key": round(1000 * max(self.key_seconds), 3),
            "best_round_keys_per_second": round(max(rates), 2),
            "median_round_keys_per_second": round(statistics.median(rates), 2),
            "wall_seconds": round(sum(self.round_seconds), 3),
            "cpu_seconds": round(sum(self.round_cpu_seconds), 3),
        }


def _generate(timings: KindTimings) -> None:
    """One round of `timings.kind`: its keys one after the other, each timed."""
    kind = timings.kind
    cpu, start = time.process_time(), time.perf_counter()
    for _ in range(kind.per_round):
        before = time.perf_counter()
        key = generate_key(kind.algorithm, kind.bits)
        timings.key_seconds.append(time.perf_counter() - before)
        timings.keys.append(key)
    timings.round_seconds.append(time.perf_counter() - start)
    timings.round_cpu_seconds.append(time.process_time() - cpu)


def measure_keygen(rounds: int) -> dict[str, KindTimings]:
    """Every kind's keys, in this process as one pool process would make them, by label.

    Each round makes `per_round` keys of every kind, the kinds in turn (reversed every other
    round, so none always runs on a warmer machine). RSA key generation searches for primes,
    so one key's time varies widely; the mean over many keys is the rate.
    """
    timings = {kind.label: KindTimings(kind) for kind in KINDS}
    for round_ in range(rounds):
        order = list(timings.values())
        for kind_timings in order if round_ % 2 == 0 else reversed(order):
            _generate(kind_timings)
        print(
            f"  key generation round {round_ + 1} of {rounds}: "
            + ", ".join(
                f"{t.kind.label} {t.round_rates()[-1]:.1f} keys/s" for t in timings.values()
            )
        )
    return timings


def keygen_ratios(timings: dict[str, KindTimings]) -> dict[str, float]:
    """How many times longer an RSA 2048 key takes than an Ed25519 key, in this run.

    Over all keys (mean time per key), and as the throughput bench gives its ratios: the best
    round of one over the best round of the other, and the same for the median rounds.
    """
    rsa, ed = timings[RSA_2048.label], timings[ED25519.label]
    rsa_rounds = [s / RSA_2048.per_round for s in rsa.round_seconds]
    ed_rounds = [s / ED25519.per_round for s in ed.round_seconds]
    return {
        "mean": round(rsa.mean_ms / ed.mean_ms, 1),
        "best": round(min(rsa_rounds) / min(ed_rounds), 1),
        "median": round(statistics.median(rsa_rounds) / statistics.median(ed_rounds), 1),
    }
