"""The input tables of CONTRACT section 1, declared once.

Every other module takes column names, types and enumerations from here; no
second spelling of a column exists anywhere in the code base.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Logical column types. The engine maps them to its own types.
TEXT = "text"
INT = "int"
NUMBER = "number"
BOOL = "bool"
TIMESTAMP = "timestamp"
PERIOD = "period"  # YYYY-MM

CHANNELS: tuple[str, ...] = (
    "f2f_visit", "remote_visit", "phone", "email", "sms", "web", "portal", "webinar",
    "congress", "advisory_board", "msl_meeting", "medical_inquiry", "social", "sample",
    "payment",
    "eventlog",  # an extension: events of a process log (`hcpj ingest --format xes|eventlog`)
)
ACTIONS: tuple[str, ...] = (
    "sent", "delivered", "opened", "clicked", "visited", "viewed", "downloaded", "registered",
    "attended", "requested", "replied", "completed", "declined", "bounced", "unsubscribed",
)
DIRECTIONS: tuple[str, ...] = ("outbound", "inbound")
TEAMS: tuple[str, ...] = ("commercial", "medical", "market_access")
PROFESSIONS: tuple[str, ...] = (
    "physician", "nurse_practitioner", "physician_assistant", "pharmacist", "nurse", "allied",
)
CONTENT_FORMATS: tuple[str, ...] = (
    "article", "video", "podcast", "detail_aid", "infographic", "slide_deck",
    "email_template", "webinar_recording",
)
AUDIENCES: tuple[str, ...] = ("hcp", "patient")
MLR_STATUSES: tuple[str, ...] = ("draft", "in_review", "approved", "expired", "withdrawn")
CONSENT_STATUSES: tuple[str, ...] = ("opt_in", "opt_out")
CONSENT_PURPOSES: tuple[str, ...] = ("promotional", "medical", "research")
QUALITY_DIMENSIONS: tuple[str, ...] = (
    "relevant", "consumable", "accessible", "connective", "purposeful",
)
RELATIONSHIP_KINDS: tuple[str, ...] = (
    "coauthor", "referral", "affiliation", "speaker_attendee", "advisory_peer",
)

# Names of enumerations a workspace may extend in hcpj.toml ([contract] section).
EXTENDABLE = {"channel": "channels", "action": "actions"}


@dataclass(frozen=True)
class Column:
    name: str
    type: str = TEXT
    required: bool = False
    enum: tuple[str, ...] | None = None
    # name of an enumeration a workspace may extend (see EXTENDABLE)
    extendable: str | None = None
    npi: bool = False  # NPI Luhn check
    personal: bool = False  # personal data: never logged
    int_range: tuple[int, int] | None = None
    references_record: bool = False  # must name a known hcps.record_id
    future_ok: bool = False  # a planned date (content expiry), not something that happened


@dataclass(frozen=True)
class TableSpec:
    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    # How a row whose key is already loaded is treated:
    #   "insert": first write wins; an exact re-send is skipped, a changed one quarantined
    #   "upsert": the newest row replaces the older one (records that change over time)
    mode: str = "insert"
    # sort order the table is stored in
    sort: tuple[str, ...] = ()
    description: str = ""
    extra_sorts: tuple[str, ...] = field(default_factory=tuple)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def required(self) -> list[str]:
        return [c.name for c in self.columns if c.required]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)


HCPS = TableSpec(
    name="hcps",
    key=("record_id",),
    mode="upsert",
    sort=("record_id",),
    description="one row per HCP record per source system",
    columns=(
        Column("record_id", required=True),
        Column("source", required=True),
        Column("npi", npi=True),
        Column("first_name", personal=True),
        Column("middle_name", personal=True),
        Column("last_name", required=True, personal=True),
        Column("credential"),
        Column("profession", enum=PROFESSIONS),
        Column("specialty"),
        Column("organization"),
        Column("address_line1", personal=True),
        Column("city"),
        Column("state"),
        Column("postal_code"),
        Column("country"),
        Column("email", personal=True),
        Column("phone", personal=True),
        Column("decile", INT, int_range=(1, 10)),
        Column("is_kol", BOOL),
        Column("updated_at", TIMESTAMP),
    ),
)

INTERACTIONS = TableSpec(
    name="interactions",
    key=("event_id",),
    sort=("record_id", "ts", "event_id"),
    description="one row per touchpoint event",
    columns=(
        Column("event_id", required=True),
        Column("record_id", required=True, references_record=True),
        Column("ts", TIMESTAMP, required=True),
        Column("channel", required=True, enum=CHANNELS, extendable="channels"),
        Column("action", required=True, enum=ACTIONS, extendable="actions"),
        Column("direction", enum=DIRECTIONS),
        Column("team", enum=TEAMS),
        Column("owner_id"),
        Column("content_id"),
        Column("campaign_id"),
        Column("duration_s", NUMBER),
        Column("value_usd", NUMBER),
        Column("topic"),
    ),
)

CONTENT = TableSpec(
    name="content",
    key=("content_id",),
    mode="upsert",
    sort=("content_id",),
    description="the content library",
    columns=(
        Column("content_id", required=True),
        Column("title"),
        Column("format", enum=CONTENT_FORMATS),
        Column("therapeutic_area"),
        Column("product"),
        Column("key_message"),
        Column("theme"),
        Column("tonality"),
        Column("aesthetics"),
        Column("length_minutes", NUMBER),
        Column("audience", enum=AUDIENCES),
        Column("language"),
        Column("mlr_status", required=True, enum=MLR_STATUSES),
        Column("approved_at", TIMESTAMP),
        Column("expires_at", TIMESTAMP, future_ok=True),
    ),
)

CONSENTS = TableSpec(
    name="consents",
    key=("record_id", "channel", "purpose", "ts"),
    sort=("record_id", "ts"),
    description="consent events; the latest row per (HCP, channel, purpose) wins",
    columns=(
        Column("record_id", required=True, references_record=True),
        Column("channel", required=True, enum=CHANNELS, extendable="channels"),
        Column("status", required=True, enum=CONSENT_STATUSES),
        Column("ts", TIMESTAMP, required=True),
        Column("purpose", required=True, enum=CONSENT_PURPOSES),
        Column("source"),
    ),
)

OUTCOMES = TableSpec(
    name="outcomes",
    key=("record_id", "product", "period"),
    mode="upsert",
    sort=("record_id", "period"),
    description="prescribing / adoption per HCP and month",
    columns=(
        Column("record_id", required=True, references_record=True),
        Column("product", required=True),
        Column("period", PERIOD, required=True),
        Column("nrx", NUMBER),
        Column("trx", NUMBER),
    ),
)

FEEDBACK = TableSpec(
    name="feedback",
    key=("response_id",),
    sort=("record_id", "ts", "response_id"),
    description="voice of the customer",
    columns=(
        Column("response_id", required=True),
        Column("record_id", references_record=True),
        Column("ts", TIMESTAMP),
        Column("instrument"),
        Column("question"),
        Column("score", NUMBER),
        Column("comment"),
        Column("event_id"),
        Column("dimension", enum=QUALITY_DIMENSIONS),
    ),
)

RELATIONSHIPS = TableSpec(
    name="relationships",
    key=("src_record_id", "dst_record_id", "kind"),
    mode="upsert",
    sort=("src_record_id", "dst_record_id"),
    description="the peer network",
    columns=(
        Column("src_record_id", required=True, references_record=True),
        Column("dst_record_id", required=True, references_record=True),
        Column("kind", enum=RELATIONSHIP_KINDS),
        Column("weight", NUMBER),
        Column("ts", TIMESTAMP),
    ),
)

# Load order: tables others refer to come first.
TABLES: tuple[TableSpec, ...] = (
    HCPS, CONTENT, INTERACTIONS, CONSENTS, OUTCOMES, FEEDBACK, RELATIONSHIPS,
)
BY_NAME: dict[str, TableSpec] = {t.name: t for t in TABLES}

# Columns the loader adds to every stored input table.
ATTRIBUTES = "attributes"  # JSON text of unknown extra columns
LOADED_AT = "_loaded_at"
LOAD_ID = "_load_id"
