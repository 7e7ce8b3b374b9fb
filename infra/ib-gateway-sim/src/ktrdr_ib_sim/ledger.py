"""What the gateway saw and answered: a per-request log and running counters.

Tests and benchmarks read it to prove compliance from the gateway's side ("0 pacing
violations", "N historical requests", "no request left open").
"""

from __future__ import annotations

import itertools
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class RequestRecord:
    """One data request and how it was answered.

    ``outcome`` moves from ``pending`` to ``ok``, ``error``, ``cancelled``, ``dropped`` (the
    connection closed first) or ``lost`` (in flight when the link came back with its data lost:
    never answered); ``stalled`` marks a request held by the stall fault, ``held`` one that
    waited for the link or a farm. ``link_epoch`` is the link generation it was accepted in.
    Times are wall-clock epoch seconds.
    """

    seq: int
    at: float
    client_id: int
    req_id: int
    kind: str
    symbol: str = ""
    sec_type: str = ""
    exchange: str = ""
    con_id: int = 0
    bar_size: str = ""
    duration: str = ""
    end: str = ""
    what_to_show: str = ""
    use_rth: bool = False
    format_date: int = 0
    keep_up_to_date: bool = False
    outcome: str = "pending"
    error_code: int | None = None
    error_text: str = ""
    bars: int = 0
    answered_at: float | None = None
    stalled: bool = False
    delay_s: float = 0.0  # modelled answer delay applied (latency, per-bar cost, soft delay)
    held: bool = False
    link_epoch: int = 0
    cancelled_at: float | None = None


@dataclass
class _Totals:
    messages_by_type: Counter[str] = field(default_factory=Counter)
    requests_by_type: Counter[str] = field(default_factory=Counter)
    errors_by_code: Counter[int] = field(default_factory=Counter)
    pacing_violations: int = 0
    pacing_by_rule: Counter[str] = field(default_factory=Counter)
    soft_delays: int = 0
    bars_served: int = 0
    connections_accepted: int = 0
    duplicate_client_ids: int = 0
    malformed_messages: int = 0
    unknown_messages: int = 0
    drops: int = 0
    restarts: int = 0
    farm_changes: int = 0
    stalled_requests: int = 0
    link_losses: int = 0
    link_restores_data_lost: int = 0
    link_restores_data_maintained: int = 0
    requests_held: int = 0
    requests_lost: int = 0
    farm_activations: int = 0
    slow_answers: int = 0
    cancels: int = 0
    daily_resets: int = 0
    refused_versions: int = 0


class RequestLedger:
    """The request log (bounded) and counters (unbounded) of one simulator."""

    def __init__(self, size: int = 100_000) -> None:
        self._size = size
        self.reset()

    def reset(self) -> None:
        """Forget every record and zero every counter."""
        self._records: deque[RequestRecord] = deque(maxlen=self._size)
        self._seq = itertools.count(1)
        self.totals = _Totals()

    def message(self, kind: str) -> None:
        """Count one incoming message by its type name."""
        self.totals.messages_by_type[kind] += 1

    def open(self, client_id: int, req_id: int, kind: str, **details: Any) -> RequestRecord:
        """Log a new data request and return its record for later updates."""
        record = RequestRecord(next(self._seq), time.time(), client_id, req_id, kind, **details)
        self._records.append(record)
        self.totals.requests_by_type[kind] += 1
        return record

    def answer(self, record: RequestRecord, bars: int = 0) -> None:
        """Mark a request answered with ``bars`` bars."""
        record.outcome, record.bars, record.answered_at = "ok", bars, time.time()
        self.totals.bars_served += bars

    def fail(self, record: RequestRecord, code: int, text: str) -> None:
        """Mark a request answered with an error."""
        record.outcome, record.answered_at = "error", time.time()
        record.error_code, record.error_text = code, text

    def close(self, record: RequestRecord, outcome: str) -> None:
        """Mark a request ended without data (``cancelled`` or ``dropped``)."""
        if record.outcome in ("pending", "stalled"):
            record.outcome, record.answered_at = outcome, time.time()

    def error_sent(self, code: int) -> None:
        """Count one error or notice message sent to a client."""
        self.totals.errors_by_code[code] += 1

    def pacing_violation(self, rule: str) -> None:
        """Count one 162 pacing violation issued."""
        self.totals.pacing_violations += 1
        self.totals.pacing_by_rule[rule] += 1

    def records(self, since_seq: int = 0) -> list[dict[str, Any]]:
        """Return the kept records with ``seq`` above ``since_seq``, oldest first, as dicts."""
        return [asdict(r) for r in self._records if r.seq > since_seq]

    def snapshot(self) -> dict[str, Any]:
        """Return the counters as a JSON-ready dict."""
        t = self.totals
        errors = {str(code): n for code, n in sorted(t.errors_by_code.items())}
        return {
            "messages_by_type": dict(t.messages_by_type),
            "requests_by_type": dict(t.requests_by_type),
            "errors_by_code": errors,
            "errors_issued": sum(n for c, n in t.errors_by_code.items() if not _is_notice(c)),
            "pacing_violations": t.pacing_violations,
            "pacing_by_rule": dict(t.pacing_by_rule),
            "soft_delays": t.soft_delays,
            "bars_served": t.bars_served,
            "connections_accepted": t.connections_accepted,
            "duplicate_client_ids": t.duplicate_client_ids,
            "malformed_messages": t.malformed_messages,
            "unknown_messages": t.unknown_messages,
            "drops": t.drops,
            "restarts": t.restarts,
            "farm_changes": t.farm_changes,
            "stalled_requests": t.stalled_requests,
            "link_losses": t.link_losses,
            "link_restores_data_lost": t.link_restores_data_lost,
            "link_restores_data_maintained": t.link_restores_data_maintained,
            "requests_held": t.requests_held,
            "requests_lost": t.requests_lost,
            "farm_activations": t.farm_activations,
            "slow_answers": t.slow_answers,
            "cancels": t.cancels,
            "daily_resets": t.daily_resets,
            "refused_versions": t.refused_versions,
        }


def _is_notice(code: int) -> bool:
    """Return whether a code is an informational notice (2100-2199), not an error."""
    return 2100 <= code < 2200
