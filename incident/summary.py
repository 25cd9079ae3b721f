"""The summary of a scan: every figure a report shows, as frozen dataclasses.

`summary.json` is `Summary.to_json()`; `Summary.from_json` reads it back, including results
written by earlier versions, whose missing sections are filled here and nowhere else. The
terminal, `summary.md`, the HTML report and `diff` read the summary only through these types.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from incident.config import Window, format_instant, parse_instant
from incident.errors import ConfigError, IncidentError, InputError
from incident.version import __version__

TOOL = "incident"


@dataclass(frozen=True)
class Counts:
    """Distinct events and delivery rows of one category of misdeliveries."""

    events: int
    deliveries: int


@dataclass(frozen=True)
class InputSummary:
    """One input as the scan found it: the path given, its files and rows, and (for the
    authorizations and apps) how many of its rows were rejected."""

    path: str
    files: int
    rows: int
    rows_rejected: int | None = None


@dataclass(frozen=True)
class Inputs:
    """The inputs of a scan; `apps` is None when no registry was given."""

    deliveries: InputSummary
    authorizations: InputSummary
    apps: InputSummary | None


@dataclass(frozen=True)
class RowAccounting:
    """Where every delivery row went (DESIGN rule 6): the parts always add up to `rows_read`."""

    rows_read: int
    rows_rejected: int
    rows_outside_window: int
    rows_authorized: int
    rows_misdelivered: int

    def __post_init__(self) -> None:
        parts = (
            self.rows_rejected
            + self.rows_outside_window
            + self.rows_authorized
            + self.rows_misdelivered
        )
        if parts != self.rows_read:
            raise IncidentError(f"internal error: row accounting {parts} != rows read {self}")


@dataclass(frozen=True)
class Totals:
    """The headline figures."""

    events_misdelivered: int
    deliveries_misdelivered: int
    users_exposed: int
    developers_exposed: int


@dataclass(frozen=True)
class AttributionSummary:
    """The attribution parameters, the evidence no input had, the shared endpoints, and how
    many misdeliveries rest on each level of evidence."""

    collision_window_seconds: int | float
    revocation_grace_seconds: int | float
    evidence_missing: tuple[str, ...]
    shared_endpoints: int
    shared_endpoints_with_misdeliveries: int
    # Misdeliveries per `evidence` (`full`, or the conditions that could not be checked);
    # empty for results written before it existed.
    by_evidence: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class RegulatorFigures:
    """The figures GDPR Art. 33(3)(a) asks of a breach notification: the categories and
    number of data subjects and of personal data records, and the exposure period.

    `subjects` counts exposed users per role (one person may have several roles);
    `correspondents` those who sent or received a misdelivered direct message. `records`
    counts misdelivered events and deliveries per category of record: `direct_messages`,
    `protected_posts`, `other_events` (of the types in `other_event_types`)."""

    subjects: Mapping[str, int]
    correspondents: int
    records: Mapping[str, Counts]
    other_event_types: tuple[str, ...]
    first_misdelivered_at: str | None
    last_misdelivered_at: str | None


@dataclass(frozen=True)
class Summary:
    """Everything `summary.json` holds. `attribution` and `regulator` are None for results
    written before those sections existed."""

    window: Window
    inputs: Inputs | None
    accounting: RowAccounting
    totals: Totals
    by_event_type: Mapping[str, Counts]
    by_reason: Mapping[str, Counts]
    by_cause: Mapping[str, Counts] = field(default_factory=dict)
    attribution: AttributionSummary | None = None
    regulator: RegulatorFigures | None = None
    rejected_by_reason: Mapping[str, int] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    version: str = __version__

    def overcounted(self) -> list[tuple[str, int]]:
        """The breakdowns (label, events) whose events add up to more than the events
        misdelivered: an event is counted once in each category it falls in (a retried event
        can have two reasons), while each delivery falls in exactly one."""
        breakdowns = (
            ("event type", self.by_event_type),
            ("reason", self.by_reason),
            ("cause", self.by_cause),
        )
        total = self.totals.events_misdelivered
        sums = [(label, sum(c.events for c in counts.values())) for label, counts in breakdowns]
        return [(label, events) for label, events in sums if events > total]

    def overcount_note(self) -> str | None:
        """The sentence that says why some breakdowns add up to more; None when none does."""
        over = self.overcounted()
        if not over:
            return None
        categories = " or ".join(label for label, _ in over)
        sums = " and ".join(f"by {label} ({events:,})" for label, events in over)
        total = self.totals.events_misdelivered
        noun = "event" if total == 1 else "events"
        return (
            "Events are counted once per category they fall in: an event delivered several "
            f"times can fall in more than one {categories}, so the events {sums} add up to "
            f"more than the {total:,} {noun} misdelivered; deliveries always add up."
        )

    def to_json(self) -> dict[str, Any]:
        """The summary as `summary.json` holds it, sections in a fixed order."""
        return {
            "tool": {"name": TOOL, "version": self.version},
            "window": {
                "since": format_instant(self.window.since),
                "until": format_instant(self.window.until),
            },
            "inputs": _inputs_json(self.inputs),
            "accounting": _plain(self.accounting),
            "totals": _plain(self.totals),
            "by_event_type": _plain(self.by_event_type),
            "by_reason": _plain(self.by_reason),
            "by_cause": _plain(self.by_cause),
            "attribution": _plain(self.attribution),
            "regulator": _plain(self.regulator),
            "rejected_by_reason": dict(self.rejected_by_reason),
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_json(cls, document: Mapping[str, Any], origin: str) -> Summary:
        """Read `summary.json` as written by this or an earlier version; `InputError` naming
        `origin` when a section is missing or holds values of another shape."""
        try:
            return _summary(document)
        except KeyError as error:
            raise InputError(f"{origin}: incomplete incident summary (no {error})") from None
        except (TypeError, ValueError, AttributeError, IncidentError) as error:
            detail = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise InputError(f"{origin}: malformed incident summary ({detail})") from None


def _plain(value: Any) -> Any:
    """Dataclasses, mappings and tuples as JSON values, fields in declaration order."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    names = value.__dataclass_fields__
    return {name: _plain(getattr(value, name)) for name in names}


def _inputs_json(inputs: Inputs | None) -> dict[str, Any] | None:
    if inputs is None:
        return None

    def one(source: InputSummary | None) -> dict[str, Any] | None:
        # The deliveries' rejected rows are in the accounting: their input has no such field.
        fields = _plain(source)
        if fields is not None and source is not None and source.rows_rejected is None:
            del fields["rows_rejected"]
        return fields  # type: ignore[no-any-return]

    return {
        "deliveries": one(inputs.deliveries),
        "authorizations": one(inputs.authorizations),
        "apps": one(inputs.apps),
    }


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected a count, found {value!r}")
    return value


def _counts(section: Mapping[str, Any]) -> dict[str, Counts]:
    return {
        str(name): Counts(_int(c["events"]), _int(c["deliveries"])) for name, c in section.items()
    }


def _input(section: Mapping[str, Any] | None) -> InputSummary | None:
    if section is None:
        return None
    rejected = section.get("rows_rejected")
    return InputSummary(
        str(section["path"]),
        _int(section["files"]),
        _int(section["rows"]),
        None if rejected is None else _int(rejected),
    )


def _inputs(section: Mapping[str, Any] | None) -> Inputs | None:
    if section is None:
        return None
    deliveries, authorizations = _input(section["deliveries"]), _input(section["authorizations"])
    if deliveries is None or authorizations is None:
        raise ValueError("inputs without deliveries or authorizations")
    return Inputs(deliveries, authorizations, _input(section.get("apps")))


def _attribution(section: Mapping[str, Any] | None) -> AttributionSummary | None:
    if section is None:
        return None
    return AttributionSummary(
        section["collision_window_seconds"],
        section["revocation_grace_seconds"],
        tuple(str(e) for e in section["evidence_missing"]),
        _int(section["shared_endpoints"]),
        _int(section["shared_endpoints_with_misdeliveries"]),
        {str(k): _int(v) for k, v in section.get("by_evidence", {}).items()},
    )


def _regulator(section: Mapping[str, Any] | None) -> RegulatorFigures | None:
    if section is None:
        return None
    return RegulatorFigures(
        subjects={str(k): _int(v) for k, v in section["subjects"].items()},
        correspondents=_int(section["correspondents"]),
        records=_counts(section["records"]),
        other_event_types=tuple(str(t) for t in section["other_event_types"]),
        first_misdelivered_at=section["first_misdelivered_at"],
        last_misdelivered_at=section["last_misdelivered_at"],
    )


def _summary(document: Mapping[str, Any]) -> Summary:
    window = document["window"]
    try:
        span = Window(parse_instant(window["since"]), parse_instant(window["until"]))
    except ConfigError as error:
        raise ValueError(str(error)) from None
    return Summary(
        window=span,
        inputs=_inputs(document.get("inputs")),
        accounting=RowAccounting(**{k: _int(v) for k, v in document["accounting"].items()}),
        totals=Totals(**{k: _int(v) for k, v in document["totals"].items()}),
        by_event_type=_counts(document["by_event_type"]),
        by_reason=_counts(document["by_reason"]),
        # Sections added later: absent from results written before them.
        by_cause=_counts(document.get("by_cause") or {}),
        attribution=_attribution(document.get("attribution")),
        regulator=_regulator(document.get("regulator")),
        rejected_by_reason={
            str(k): _int(v) for k, v in (document.get("rejected_by_reason") or {}).items()
        },
        warnings=tuple(str(w) for w in document.get("warnings") or ()),
        version=str(document.get("tool", {}).get("version", "")),
    )
