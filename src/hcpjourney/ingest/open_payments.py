"""Reader for CMS Open Payments *general payments* files.

Turns one payments file into contract ``hcps`` (one record per recipient) and
``interactions`` (one ``payment`` event per payment row). Three layouts are
recognised by their column names (case-insensitive):

``profiles``
    Program years 2013-2015 as republished without recipient names (e.g. the
    Cedar Rapids Gazette Iowa extract): ``Physician_Profile_ID`` but no
    ``Physician_Last_Name``. Recipients come from a separate profiles file
    (columns ``id, fn, ln, add, city, zip, st, spec`` or the CMS profile
    supplement's ``Physician_Profile_*`` names), joined on the profile id.
``physician``
    The full CMS layout with ``Physician_*`` recipient columns on every row
    (program years 2013-2020).
``covered_recipient``
    The later CMS layout with ``Covered_Recipient_*`` columns, including
    ``Covered_Recipient_NPI``.

Everything is read as text with pyarrow and mapped column-wise (no per-row
Python). Values the contract checks (dates, amounts, NPIs) are passed on as
text for the loader to validate; only well-formed CMS dates are rewritten to
ISO ``YYYY-MM-DD``. A row the loader must reject therefore still reaches the
quarantine with its original value.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from hcpjourney.contract.schemas import HCPS, INTERACTIONS

SOURCE = "open_payments"
RECORD_PREFIX = "open_payments:"
# Interactions paid to a teaching hospital reference this prefix. Hospitals are
# not HCPs, so no hcps record exists and the loader quarantines those rows as
# referring to an unknown record (not loaded, not lost).
HOSPITAL_PREFIX = "open_payments:teaching_hospital:"
LINE = "_line"

LAYOUT_PROFILES = "profiles"
LAYOUT_PHYSICIAN = "physician"
LAYOUT_COVERED_RECIPIENT = "covered_recipient"


class OpenPaymentsFormatError(ValueError):
    """The file is not an Open Payments general payments file, or cannot be read."""


@dataclass(frozen=True)
class ReaderOutput:
    table: str  # contract table name: "hcps" or "interactions"
    file: str  # file label for quarantine reports (name of the file the rows came from)
    data: pa.Table  # string columns (contract names + extras) and int64 "_line"


# ---------------------------------------------------------------------------
# Column names (lower case; files are matched case-insensitively)

_RECORD_ID = "record_id"
_AMOUNT = "total_amount_of_payment_usdollars"
_DATE = "date_of_payment"
_NATURE = "nature_of_payment_or_transfer_of_value"
_REQUIRED_PAYMENT = (_RECORD_ID, _AMOUNT, _DATE, _NATURE)
_CMS_SPELLING = {
    _RECORD_ID: "Record_ID",
    _AMOUNT: "Total_Amount_of_Payment_USDollars",
    _DATE: "Date_of_Payment",
    _NATURE: "Nature_of_Payment_or_Transfer_of_Value",
}
_PROFILE_IDS = ("covered_recipient_profile_id", "physician_profile_id")

# Recipient fields per layout: target name -> candidate source columns.
_RECIPIENT_COVERED: dict[str, tuple[str, ...]] = {
    "profile_id": ("covered_recipient_profile_id",),
    "npi": ("covered_recipient_npi",),
    "first_name": ("covered_recipient_first_name",),
    "middle_name": ("covered_recipient_middle_name",),
    "last_name": ("covered_recipient_last_name",),
    "name_suffix": ("covered_recipient_name_suffix",),
    "primary_type": ("covered_recipient_primary_type_1",),
    "specialty": ("covered_recipient_specialty_1",),
    "license_states": tuple(f"covered_recipient_license_state_code{i}" for i in range(1, 6)),
    "other_primary_types": tuple(f"covered_recipient_primary_type_{i}" for i in range(2, 7)),
    "other_specialties": tuple(f"covered_recipient_specialty_{i}" for i in range(2, 7)),
}
_RECIPIENT_PHYSICIAN: dict[str, tuple[str, ...]] = {
    "profile_id": ("physician_profile_id",),
    "npi": ("physician_npi",),
    "first_name": ("physician_first_name",),
    "middle_name": ("physician_middle_name",),
    "last_name": ("physician_last_name",),
    "name_suffix": ("physician_name_suffix",),
    "primary_type": ("physician_primary_type",),
    "specialty": ("physician_specialty",),
    "license_states": tuple(f"physician_license_state_code{i}" for i in range(1, 6)),
}
_RECIPIENT_ADDRESS: dict[str, tuple[str, ...]] = {
    "address_line1": ("recipient_primary_business_street_address_line1",),
    "address_line2": ("recipient_primary_business_street_address_line2",),
    "city": ("recipient_city",),
    "state": ("recipient_state",),
    "zip": ("recipient_zip_code",),
    "country": ("recipient_country",),
    "province": ("recipient_province",),
    "foreign_postal_code": ("recipient_postal_code",),
    "recipient_type": ("covered_recipient_type",),
}
# Profiles files: the Gazette's short names and the CMS profile supplement's.
_PROFILE_FIELDS: dict[str, tuple[str, ...]] = {
    "profile_id": ("id", "physician_profile_id", "covered_recipient_profile_id"),
    "npi": ("npi", "covered_recipient_npi", "covered_recipient_profile_npi"),
    "first_name": ("fn", "physician_profile_first_name", "covered_recipient_profile_first_name"),
    "middle_name": (
        "mn", "physician_profile_middle_name", "covered_recipient_profile_middle_name",
    ),
    "last_name": ("ln", "physician_profile_last_name", "covered_recipient_profile_last_name"),
    "name_suffix": ("physician_profile_suffix", "covered_recipient_profile_suffix"),
    "address_line1": (
        "add", "physician_profile_address_line_1", "covered_recipient_profile_address_line_1",
    ),
    "address_line2": (
        "physician_profile_address_line_2", "covered_recipient_profile_address_line_2",
    ),
    "city": ("city", "physician_profile_city", "covered_recipient_profile_city"),
    "state": ("st", "physician_profile_state", "covered_recipient_profile_state"),
    "zip": ("zip", "physician_profile_zipcode", "covered_recipient_profile_zipcode"),
    "country": ("physician_profile_country_name", "covered_recipient_profile_country_name"),
    "province": ("physician_profile_province_name", "covered_recipient_profile_province_name"),
    "primary_type": ("covered_recipient_profile_primary_type",),
    "specialty": (
        "spec", "physician_profile_primary_specialty",
        "covered_recipient_profile_primary_specialty",
    ),
    "latitude": ("lat",),
    "longitude": ("long", "lon", "lng"),
}
_PROFILE_KEYS = (
    ("id", "fn", "ln"),
    ("physician_profile_id", "physician_profile_last_name"),
    ("covered_recipient_profile_id", "covered_recipient_profile_last_name"),
)

_HOSPITAL_ID = ("teaching_hospital_id", "teaching_hospital_ccn")

# Payment attributes kept on interactions (snake_case name -> source columns).
_PAYMENT_EXTRAS: dict[str, tuple[str, ...]] = {
    "manufacturer": ("applicable_manufacturer_or_applicable_gpo_making_payment_name",),
    "manufacturer_id": ("applicable_manufacturer_or_applicable_gpo_making_payment_id",),
    "manufacturer_state": ("applicable_manufacturer_or_applicable_gpo_making_payment_state",),
    "manufacturer_country": (
        "applicable_manufacturer_or_applicable_gpo_making_payment_country",
        "applicable_manufacturer_or_applicable_gpo_making_payment_countr",  # 63-char cut
    ),
    "submitting_manufacturer": ("submitting_applicable_manufacturer_or_applicable_gpo_name",),
    "form_of_payment": ("form_of_payment_or_transfer_of_value",),
    "number_of_payments": ("number_of_payments_included_in_total_amount",),
    "program_year": ("program_year",),
    "payment_publication_date": ("payment_publication_date",),
    "change_type": ("change_type",),
    "dispute_status": ("dispute_status_for_publication",),
    "delay_in_publication": ("delay_in_publication_indicator",),
    "contextual_information": ("contextual_information",),
    "travel_city": ("city_of_travel",),
    "travel_state": ("state_of_travel",),
    "travel_country": ("country_of_travel",),
    "third_party_payment": ("third_party_payment_recipient_indicator",),
    "third_party_entity": (
        "name_of_third_party_entity_receiving_payment_or_transfer_of_value",
        "name_of_third_party_entity_receiving_payment_or_transfer_of_val",  # 63-char cut
        "name_of_entity_receiving_payment_or_transfer_of_value",
    ),
    "third_party_is_recipient": ("third_party_equals_covered_recipient_indicator",),
    "charity": ("charity_indicator",),
    "ownership_indicator": ("physician_ownership_indicator",),
    "product_indicator": ("product_indicator",),
    "related_product_indicator": ("related_product_indicator",),
    "recipient_type": ("covered_recipient_type",),
    "teaching_hospital_id": ("teaching_hospital_id",),
    "teaching_hospital_ccn": ("teaching_hospital_ccn",),
    "teaching_hospital_name": ("teaching_hospital_name",),
}
for _i in range(1, 6):
    _PAYMENT_EXTRAS[f"drug_{_i}"] = (f"name_of_associated_covered_drug_or_biological{_i}",)
    _PAYMENT_EXTRAS[f"drug_ndc_{_i}"] = (f"ndc_of_associated_covered_drug_or_biological{_i}",)
    _PAYMENT_EXTRAS[f"device_{_i}"] = (
        f"name_of_associated_covered_device_or_medical_supply{_i}",
    )
    _PAYMENT_EXTRAS[f"product_{_i}"] = (
        f"name_of_drug_or_biological_or_device_or_medical_supply_{_i}",
    )
    _PAYMENT_EXTRAS[f"product_type_{_i}"] = (
        f"indicate_drug_or_biological_or_device_or_medical_supply_{_i}",
    )
    _PAYMENT_EXTRAS[f"product_category_{_i}"] = (f"product_category_or_therapeutic_area_{_i}",)
    _PAYMENT_EXTRAS[f"product_ndc_{_i}"] = (f"associated_drug_or_biological_ndc_{_i}",)
    _PAYMENT_EXTRAS[f"product_pdi_{_i}"] = (f"associated_device_or_medical_supply_pdi_{_i}",)
    _PAYMENT_EXTRAS[f"product_covered_{_i}"] = (f"covered_or_noncovered_indicator_{_i}",)
_PRODUCT_NAME_COLUMNS = tuple(
    f"{kind}_{i}" for kind in ("drug", "device", "product") for i in range(1, 6)
)

# Covered recipient primary type (lower case) -> (credential, profession).
_PRIMARY_TYPES: dict[str, tuple[str, str]] = {
    "medical doctor": ("MD", "physician"),
    "doctor of osteopathy": ("DO", "physician"),
    "doctor of dentistry": ("DDS", "physician"),
    "doctor of podiatric medicine": ("DPM", "physician"),
    "doctor of optometry": ("OD", "physician"),
    "chiropractor": ("DC", "physician"),
    "chiropractic physician": ("DC", "physician"),
    "nurse practitioner": ("NP", "nurse_practitioner"),
    "physician assistant": ("PA", "physician_assistant"),
    "clinical nurse specialist": ("CNS", "nurse"),
    "certified registered nurse anesthetist": ("CRNA", "nurse"),
    "certified nurse-midwife": ("CNM", "nurse"),
    "certified nurse midwife": ("CNM", "nurse"),
    "anesthesiologist assistant": ("AA", "allied"),
}
# Fallback when no primary type is given: NUCC taxonomy path prefix (lower case,
# spaces after "/" or "|" removed) -> (credential or None, profession).
_TAXONOMY_RULES: tuple[tuple[str, str | None, str], ...] = (
    ("allopathic & osteopathic physicians", None, "physician"),
    ("dental providers", "DDS", "physician"),
    ("podiatric medicine & surgery service providers", "DPM", "physician"),
    ("chiropractic providers", "DC", "physician"),
    ("eye and vision services providers|optometrist", "OD", "physician"),
    (
        "physician assistants & advanced practice nursing providers|nurse practitioner",
        "NP", "nurse_practitioner",
    ),
    (
        "physician assistants & advanced practice nursing providers|physician assistant",
        "PA", "physician_assistant",
    ),
    ("pharmacy service providers|pharmacist", "PharmD", "pharmacist"),
)

_US_STATES = {
    "alabama": "AL", "alaska": "AK", "arizona": "AZ", "arkansas": "AR", "california": "CA",
    "colorado": "CO", "connecticut": "CT", "delaware": "DE", "district of columbia": "DC",
    "florida": "FL", "georgia": "GA", "hawaii": "HI", "idaho": "ID", "illinois": "IL",
    "indiana": "IN", "iowa": "IA", "kansas": "KS", "kentucky": "KY", "louisiana": "LA",
    "maine": "ME", "maryland": "MD", "massachusetts": "MA", "michigan": "MI",
    "minnesota": "MN", "mississippi": "MS", "missouri": "MO", "montana": "MT",
    "nebraska": "NE", "nevada": "NV", "new hampshire": "NH", "new jersey": "NJ",
    "new mexico": "NM", "new york": "NY", "north carolina": "NC", "north dakota": "ND",
    "ohio": "OH", "oklahoma": "OK", "oregon": "OR", "pennsylvania": "PA",
    "rhode island": "RI", "south carolina": "SC", "south dakota": "SD", "tennessee": "TN",
    "texas": "TX", "utah": "UT", "vermont": "VT", "virginia": "VA", "washington": "WA",
    "west virginia": "WV", "wisconsin": "WI", "wyoming": "WY", "puerto rico": "PR",
    "guam": "GU", "virgin islands": "VI", "american samoa": "AS",
    "northern mariana islands": "MP",
}
# States whose ZIP codes start with 0 (spreadsheets drop the leading zero).
_ZERO_ZIP_STATES = ("CT", "MA", "ME", "NH", "NJ", "RI", "VT", "PR", "VI", "AE")
_COUNTRIES = {
    "united states": "US", "united states of america": "US", "usa": "US", "us": "US",
    "united states minor outlying islands": "UM", "canada": "CA", "mexico": "MX",
    "united kingdom": "GB", "germany": "DE", "france": "FR", "switzerland": "CH",
    "japan": "JP", "india": "IN", "israel": "IL", "ireland": "IE", "netherlands": "NL",
    "italy": "IT", "spain": "ES", "australia": "AU",
}

_MDY = r"^(?P<m>\d{1,2})/(?P<d>\d{1,2})/(?P<y>\d{4})$"
_YMD = r"^(?P<y>\d{4})-(?P<m>\d{1,2})-(?P<d>\d{1,2})(?:[ T]00:00(?::00(?:\.0+)?)?)?$"


# ---------------------------------------------------------------------------
# Reading


def _is_parquet(path: Path) -> bool:
    return path.suffix.lower() == ".parquet"


def _header(path: Path) -> list[str]:
    """Column names of a CSV or Parquet file (raises OSError / ValueError)."""
    if _is_parquet(path):
        return list(pq.read_schema(path).names)
    with path.open(encoding="utf-8-sig", errors="replace", newline="") as fh:
        first = fh.readline()
    rows = list(csv.reader([first]))
    return [c.strip() for c in rows[0]] if rows else []


def _lower_map(names: Iterable[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for n in names:
        out.setdefault(n.strip().lower(), n)
    return out


def _read_text_table(path: Path) -> pa.Table:
    """All columns as text (empty -> null) plus the int64 ``_line`` column."""
    try:
        if _is_parquet(path):
            raw = pq.read_table(path)
            cols = [pc.cast(raw.column(i), pa.string()) for i in range(raw.num_columns)]
            table = pa.table(cols, names=raw.column_names)
            return table.append_column(LINE, _row_lines(table.num_rows))
        names = _header(path)
        convert = pacsv.ConvertOptions(
            column_types={n: pa.string() for n in names},
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
        )
        table = pacsv.read_csv(path, convert_options=convert)
    except (pa.ArrowInvalid, OSError, UnicodeDecodeError, IndexError) as exc:
        raise OpenPaymentsFormatError(f"{path.name}: cannot be read as CSV ({exc})") from exc
    return table.append_column(LINE, _physical_lines(table))


def _row_lines(n: int) -> pa.Array:
    """Row index + 2 (the header is line 1)."""
    return pa.array(np.arange(2, n + 2, dtype=np.int64))


def _physical_lines(table: pa.Table) -> pa.Array:
    """Line where each record starts (header = 1), counting newlines inside quoted values."""
    base = _row_lines(table.num_rows)
    extra: pa.Array | None = None
    for col in table.columns:
        if not pa.types.is_string(col.type):
            continue
        cnt = pc.fill_null(pc.count_substring(col, "\n"), 0)
        if pc.max(cnt).as_py():
            extra = cnt if extra is None else pc.add(extra, cnt)
    if extra is None:
        return base
    extra = pc.cast(extra, pa.int64())
    before = pc.subtract(pc.cumulative_sum(extra), extra)  # newlines in earlier records
    return pc.add(base, before)


# ---------------------------------------------------------------------------
# Column helpers


def _clean(arr: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """Trim whitespace; empty -> null."""
    trimmed = pc.utf8_trim_whitespace(arr)
    return pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, pa.string()), trimmed)


def _pick(
    table: pa.Table, lower: dict[str, str], candidates: Sequence[str]
) -> pa.ChunkedArray | None:
    """First of the candidate columns present, trimmed, or None."""
    for c in candidates:
        if c in lower:
            return _clean(table.column(lower[c]))
    return None


def _join(
    table: pa.Table, lower: dict[str, str], candidates: Sequence[str], sep: str
) -> pa.ChunkedArray | None:
    """All candidate columns present, non-null values joined by ``sep``."""
    cols = [_clean(table.column(lower[c])) for c in candidates if c in lower]
    if not cols:
        return None
    return _join_non_null(cols, sep)


def _join_non_null(
    cols: Sequence[pa.ChunkedArray | pa.Array], sep: str
) -> pa.ChunkedArray | pa.Array:
    """Row-wise join of the non-null values (null when all are null).

    binary_join_element_wise(null_handling="skip") drops all-null rows in
    pyarrow 26, so the join is built pairwise.
    """
    acc = cols[0]
    for nxt in cols[1:]:
        both = pc.binary_join_element_wise(acc, nxt, sep)
        acc = pc.coalesce(both, acc, nxt)
    return acc


def _const(value: str | None, n: int) -> pa.Array:
    nulls = pa.nulls(n, pa.string())
    return nulls if value is None else pc.fill_null(nulls, value)


def _lookup(
    arr: pa.ChunkedArray | pa.Array, mapping: dict[str, str]
) -> pa.ChunkedArray | pa.Array:
    """Map lower-cased values through ``mapping`` (null where not found)."""
    keys = pa.array(list(mapping.keys()), pa.string())
    values = pa.array(list(mapping.values()), pa.string())
    idx = pc.index_in(pc.utf8_lower(arr), value_set=keys)
    return pc.take(values, idx)


def _snake(name: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", name.strip().lower()).strip("_")


# ---------------------------------------------------------------------------
# Value normalisation (vectorised)


def _iso_date(raw: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """MM/DD/YYYY or YYYY-MM-DD[ 00:00:00] -> YYYY-MM-DD; anything else unchanged.

    Impossible dates (02/30/2014) stay as given so the loader quarantines them.
    """
    out = raw
    for pattern in (_YMD, _MDY):
        parts = pc.extract_regex(raw, pattern)
        y = pc.struct_field(parts, "y")
        m = pc.utf8_lpad(pc.struct_field(parts, "m"), width=2, padding="0")
        d = pc.utf8_lpad(pc.struct_field(parts, "d"), width=2, padding="0")
        iso = pc.binary_join_element_wise(y, m, d, "-")
        parsed = pc.strptime(iso, format="%Y-%m-%d", unit="s", error_is_null=True)
        # strptime rolls 02/30 over to 03/02: keep only exact round trips
        back = pc.strftime(parsed, format="%Y-%m-%d")
        ok = pc.fill_null(pc.equal(back, iso), False)
        out = pc.if_else(ok, iso, out)
    return out


def _postal_code(
    zip_raw: pa.ChunkedArray | pa.Array, state: pa.ChunkedArray | pa.Array
) -> pa.ChunkedArray | pa.Array:
    """Five-digit US ZIP code from ZIP, ZIP+4 (with or without dash), or a ZIP whose
    leading zero was lost (only in states whose ZIPs start with 0); else null."""
    digits = pc.replace_substring_regex(zip_raw, r"^(\d{5})-?\d{4}$", r"\1")
    five = pc.if_else(
        pc.fill_null(pc.match_substring_regex(digits, r"^\d{5}$"), False),
        digits, pa.scalar(None, pa.string()),
    )
    zero_state = pc.fill_null(
        pc.is_in(state, value_set=pa.array(_ZERO_ZIP_STATES, pa.string())), False
    )
    short = pc.fill_null(pc.match_substring_regex(zip_raw, r"^\d{3,4}$"), False)
    short9 = pc.fill_null(pc.match_substring_regex(zip_raw, r"^\d{7,8}$"), False)
    padded5 = pc.utf8_lpad(zip_raw, width=5, padding="0")
    padded9 = pc.utf8_slice_codeunits(pc.utf8_lpad(zip_raw, width=9, padding="0"), 0, 5)
    five = pc.if_else(pc.and_(short, zero_state), padded5, five)
    return pc.if_else(pc.and_(short9, zero_state), padded9, five)


def _state_code(state: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """USPS code: two letters upper-cased, full US state names mapped, else as given."""
    two = pc.fill_null(pc.match_substring_regex(state, r"^[A-Za-z]{2}$"), False)
    mapped = _lookup(state, _US_STATES)
    return pc.if_else(two, pc.utf8_upper(state), pc.coalesce(mapped, state))


def _credential_profession(
    primary_type: pa.ChunkedArray | pa.Array | None,
    specialty: pa.ChunkedArray | pa.Array | None,
    n: int,
) -> tuple[pa.ChunkedArray | pa.Array, pa.ChunkedArray | pa.Array]:
    credential: pa.ChunkedArray | pa.Array = _const(None, n)
    profession: pa.ChunkedArray | pa.Array = _const(None, n)
    if primary_type is not None:
        credential = _lookup(primary_type, {k: v[0] for k, v in _PRIMARY_TYPES.items()})
        profession = _lookup(primary_type, {k: v[1] for k, v in _PRIMARY_TYPES.items()})
    if specialty is not None:
        spec = pc.replace_substring_regex(pc.utf8_lower(specialty), r"\s*[/|]\s*", "|")
        tax_cred: pa.ChunkedArray | pa.Array = _const(None, n)
        tax_prof: pa.ChunkedArray | pa.Array = _const(None, n)
        for prefix, cred, prof in reversed(_TAXONOMY_RULES):
            hit = pc.fill_null(pc.starts_with(spec, prefix), False)
            tax_prof = pc.if_else(hit, prof, tax_prof)
            tax_cred = pc.if_else(hit, pa.scalar(cred, pa.string()), tax_cred)
        # the taxonomy only fills in when the primary type told us nothing
        no_type = pc.is_null(profession)
        credential = pc.if_else(no_type, tax_cred, credential)
        profession = pc.if_else(no_type, tax_prof, profession)
    return credential, profession


# ---------------------------------------------------------------------------
# Layout detection


def _missing_payment_columns(lower: dict[str, str]) -> list[str]:
    missing = [_CMS_SPELLING[c] for c in _REQUIRED_PAYMENT if c not in lower]
    if not any(c in lower for c in _PROFILE_IDS):
        missing.append("Physician_Profile_ID or Covered_Recipient_Profile_ID")
    return missing


def _layout(lower: dict[str, str]) -> str:
    if "covered_recipient_profile_id" in lower:
        return LAYOUT_COVERED_RECIPIENT
    if "physician_last_name" in lower:
        return LAYOUT_PHYSICIAN
    return LAYOUT_PROFILES


def looks_like_open_payments(path: str | Path) -> bool:
    """True when the file's header is that of an Open Payments general payments file."""
    p = Path(path)
    try:
        lower = _lower_map(_header(p))
    except (OSError, ValueError, pa.ArrowException):
        return False
    return not _missing_payment_columns(lower)


def looks_like_open_payments_profiles(path: str | Path) -> bool:
    """True for a recipient profiles file (``id, fn, ln`` or the CMS profile supplement)."""
    p = Path(path)
    try:
        lower = _lower_map(_header(p))
    except (OSError, ValueError, pa.ArrowException):
        return False
    return any(all(k in lower for k in keys) for keys in _PROFILE_KEYS)


def _find_profiles(payments: Path) -> Path:
    candidates = sorted(
        f for f in payments.parent.iterdir()
        if f != payments and f.is_file()
        and (f.suffix.lower() in (".csv", ".parquet") or f.name.lower().endswith(".csv.gz"))
        and looks_like_open_payments_profiles(f)
    )
    if not candidates:
        raise OpenPaymentsFormatError(
            f"{payments.name}: Open Payments file without recipient names and no profiles "
            f"file (columns id, fn, ln) next to it; pass one with profiles="
        )
    if len(candidates) > 1:
        names = ", ".join(c.name for c in candidates)
        raise OpenPaymentsFormatError(
            f"{payments.name}: several recipient profiles files next to it ({names}); "
            f"pass one with profiles="
        )
    return candidates[0]


# ---------------------------------------------------------------------------
# Mapping


def read_open_payments(
    path: str | Path, profiles: str | Path | None = None
) -> list[ReaderOutput]:
    """Map a CMS Open Payments general payments file to contract hcps and interactions.

    ``profiles`` is needed only for files without recipient names (2013-2015
    republished layout); when None, a profiles file next to ``path`` is used.
    Returns ``[hcps, interactions]``.
    """
    p = Path(path)
    try:
        names = _header(p)
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise OpenPaymentsFormatError(f"{p.name}: cannot be read ({exc})") from exc
    lower = _lower_map(names)
    missing = _missing_payment_columns(lower)
    if missing:
        raise OpenPaymentsFormatError(
            f"{p.name} is not an Open Payments general payments file: "
            f"missing column(s) {', '.join(missing)}"
        )
    layout = _layout(lower)
    profiles_path: Path | None = None
    if layout == LAYOUT_PROFILES:
        profiles_path = Path(profiles) if profiles is not None else _find_profiles(p)
        if not looks_like_open_payments_profiles(profiles_path):
            raise OpenPaymentsFormatError(
                f"{profiles_path.name} is not a recipient profiles file: "
                f"needs columns id, fn, ln (or Physician_Profile_ID, Physician_Profile_Last_Name)"
            )

    table = _read_text_table(p)
    lower = _lower_map(table.column_names)
    record_id = _recipient_record_id(table, lower)

    if layout == LAYOUT_PROFILES:
        assert profiles_path is not None
        hcps = _hcps_from_profiles(profiles_path, record_id)
        hcps_file = profiles_path.name
    else:
        fields = dict(
            _RECIPIENT_COVERED if layout == LAYOUT_COVERED_RECIPIENT else _RECIPIENT_PHYSICIAN
        )
        fields.update(_RECIPIENT_ADDRESS)
        hcps = _hcps_from_payments(table, lower, fields, record_id)
        hcps_file = p.name

    interactions = _interactions(table, lower, record_id, layout)
    return [
        ReaderOutput(table=HCPS.name, file=hcps_file, data=hcps),
        ReaderOutput(table=INTERACTIONS.name, file=p.name, data=interactions),
    ]


def _recipient_record_id(table: pa.Table, lower: dict[str, str]) -> pa.ChunkedArray:
    """record_id of each payment row: the recipient's profile id, else its teaching hospital."""
    profile = _pick(table, lower, _PROFILE_IDS)
    assert profile is not None
    person = pc.binary_join_element_wise(RECORD_PREFIX, profile, "")
    hospital = _pick(table, lower, _HOSPITAL_ID)
    if hospital is None:
        return person
    return pc.coalesce(person, pc.binary_join_element_wise(HOSPITAL_PREFIX, hospital, ""))


def _first_per_key(table: pa.Table, key: str, order: list[tuple[str, str]]) -> pa.Table:
    """One row per ``key`` value: the first after sorting by ``order`` within the key."""
    if table.num_rows == 0:
        return table
    table = table.sort_by([(key, "ascending"), *order])
    keys = table.column(key).combine_chunks()
    changed = pc.not_equal(keys.slice(1), keys.slice(0, len(keys) - 1))
    first = pa.concat_arrays([pa.array([True]), pc.fill_null(changed, True)])
    return table.filter(first)


def _variants(table: pa.Table, key: str, fields: Sequence[str]) -> pa.Table:
    """Number of distinct spellings (over ``fields``) per key, as text."""
    parts = [pc.fill_null(table.column(f), "") for f in fields if f in table.column_names]
    spelling = pc.binary_join_element_wise(*parts, "\x1f")
    counted = (
        pa.table({key: table.column(key), "spelling": spelling})
        .group_by(key)
        .aggregate([("spelling", "count_distinct")])
    )
    return pa.table({
        key: counted.column(key),
        "spelling_variants": pc.cast(counted.column("spelling_count_distinct"), pa.string()),
    })


_SPELLING_FIELDS = (
    "first_name", "middle_name", "last_name", "address_line1", "city", "zip", "specialty",
)


def _hcps_from_payments(
    table: pa.Table,
    lower: dict[str, str],
    fields: dict[str, tuple[str, ...]],
    record_id: pa.ChunkedArray,
) -> pa.Table:
    cols: dict[str, pa.ChunkedArray] = {"record_id": record_id}
    for target, cands in fields.items():
        if target in ("license_states", "other_primary_types", "other_specialties"):
            got = _join(table, lower, cands, "|")
        else:
            got = _pick(table, lower, cands)
        if got is not None:
            cols[target] = got
    cols[LINE] = table.column(LINE)
    rows = pa.table(cols)
    # people only: rows with a recipient profile id
    rows = rows.filter(pc.is_valid(rows.column("profile_id")))
    return _finish_hcps(rows)


def _hcps_from_profiles(path: Path, payment_record_id: pa.ChunkedArray) -> pa.Table:
    prof = _read_text_table(path)
    lower = _lower_map(prof.column_names)
    cols: dict[str, pa.ChunkedArray] = {}
    used: set[str] = set()
    for target, cands in _PROFILE_FIELDS.items():
        for c in cands:
            if c in lower:
                cols[target] = _clean(prof.column(lower[c]))
                used.add(lower[c])
                break
    cols["record_id"] = pc.binary_join_element_wise(RECORD_PREFIX, cols["profile_id"], "")
    # unknown profile columns are kept as attributes
    for name in prof.column_names:
        if name in used or name == LINE:
            continue
        extra = _snake(name)
        if extra and extra not in cols:
            cols[extra] = _clean(prof.column(name))
    cols[LINE] = prof.column(LINE)
    rows = pa.table(cols)
    # only recipients of this payments file (a national profile supplement has ~1M)
    paid = pc.unique(payment_record_id.drop_null())
    rows = rows.filter(pc.fill_null(pc.is_in(rows.column("record_id"), value_set=paid), False))
    return _finish_hcps(rows)


def _finish_hcps(rows: pa.Table) -> pa.Table:
    """Pick one spelling per record_id and lay out contract hcps columns + extras."""
    if "last_name" not in rows.column_names:
        rows = rows.append_column("last_name", _const(None, rows.num_rows))
    # prefer a row that carries a last name (the contract requires one)
    no_last = pc.cast(pc.is_null(rows.column("last_name")), pa.int8())
    rows = rows.append_column("_no_last", no_last)
    variants = _variants(rows, "record_id", _SPELLING_FIELDS)
    first = _first_per_key(rows, "record_id", [("_no_last", "ascending"), (LINE, "ascending")])
    first = first.drop_columns(["_no_last"])
    if "npi" in rows.column_names:
        # first NPI given for the recipient, even when the chosen row has none
        with_npi = rows.filter(pc.is_valid(rows.column("npi"))).select(["record_id", "npi", LINE])
        npis = _first_per_key(with_npi, "record_id", [(LINE, "ascending")]).select(
            ["record_id", "npi"]
        )
        first = first.drop_columns(["npi"]).join(npis, "record_id", join_type="left outer")
    first = first.join(variants, "record_id", join_type="left outer")
    first = first.sort_by([(LINE, "ascending")])
    n = first.num_rows

    def col(name: str) -> pa.ChunkedArray | pa.Array:
        return first.column(name) if name in first.column_names else _const(None, n)

    state = _state_code(col("state"))
    credential, profession = _credential_profession(
        first.column("primary_type") if "primary_type" in first.column_names else None,
        first.column("specialty") if "specialty" in first.column_names else None,
        n,
    )
    country_given = col("country")
    country = pc.coalesce(_lookup(country_given, _COUNTRIES), country_given)
    if "country" not in first.column_names:
        country = _const("US", n)  # profiles files list US recipients only
    zip_given = col("zip")
    postal = pc.coalesce(_postal_code(zip_given, state), col("foreign_postal_code"))
    zip_changed = pc.fill_null(pc.not_equal(zip_given, postal), True)
    postal_as_given = pc.if_else(
        pc.and_(pc.is_valid(zip_given), zip_changed), zip_given, pa.scalar(None, pa.string())
    )

    mapped: dict[str, pa.ChunkedArray | pa.Array] = {
        "record_id": first.column("record_id"),
        "source": _const(SOURCE, n),
        "npi": col("npi"),
        "first_name": col("first_name"),
        "middle_name": col("middle_name"),
        "last_name": col("last_name"),
        "credential": credential,
        "profession": profession,
        "specialty": col("specialty"),
        "address_line1": col("address_line1"),
        "city": col("city"),
        "state": state,
        "postal_code": postal,
        "country": country,
    }
    # contract columns not mapped here are taken as given when a profiles file has them
    out: dict[str, pa.ChunkedArray | pa.Array] = {
        name: mapped[name] if name in mapped else col(name) for name in HCPS.names
    }
    consumed = {
        "record_id", "npi", "first_name", "middle_name", "last_name", "specialty",
        "address_line1", "city", "state", "zip", "country", "foreign_postal_code", LINE,
    }
    for name in first.column_names:
        if name not in consumed and name not in out:
            out[name] = first.column(name)
    out["postal_code_as_given"] = postal_as_given
    out = _drop_empty_extras(out, HCPS.names)
    out[LINE] = pc.cast(first.column(LINE), pa.int64())
    return _as_table(out)


def _interactions(
    table: pa.Table, lower: dict[str, str], record_id: pa.ChunkedArray, layout: str
) -> pa.Table:
    n = table.num_rows
    event_id = _pick(table, lower, (_RECORD_ID,))
    ts_raw = _pick(table, lower, (_DATE,))
    value = _pick(table, lower, (_AMOUNT,))
    topic = _pick(table, lower, (_NATURE,))
    assert event_id is not None and ts_raw is not None and value is not None
    mapped: dict[str, pa.ChunkedArray | pa.Array] = {
        "event_id": event_id,
        "record_id": record_id,
        "ts": _iso_date(ts_raw),
        "channel": _const("payment", n),
        "action": _const("completed", n),
        "direction": _const("outbound", n),
        "team": _const("commercial", n),
        "value_usd": value,
        "topic": topic if topic is not None else _const(None, n),
    }
    out: dict[str, pa.ChunkedArray | pa.Array] = {
        name: mapped.get(name, _const(None, n)) for name in INTERACTIONS.names
    }
    used_sources: set[str] = {_RECORD_ID, _AMOUNT, _DATE, _NATURE, *_PROFILE_IDS}
    for target, cands in _PAYMENT_EXTRAS.items():
        got = _pick(table, lower, cands)
        if got is not None:
            out[target] = got
        used_sources.update(cands)
    products = [out[c] for c in _PRODUCT_NAME_COLUMNS if c in out]
    if products:
        out["products"] = _join_non_null(products, "; ")
    if layout != LAYOUT_PROFILES:
        # recipient columns went to hcps
        recip = _RECIPIENT_COVERED if layout == LAYOUT_COVERED_RECIPIENT else _RECIPIENT_PHYSICIAN
        for cands in (*recip.values(), *_RECIPIENT_ADDRESS.values()):
            used_sources.update(cands)
    # any other column is kept, under its snake_case name
    for low, name in lower.items():
        if low in used_sources or name == LINE:
            continue
        extra = _snake(low)
        if extra and extra not in out:
            out[extra] = _clean(table.column(name))
    out = _drop_empty_extras(out, INTERACTIONS.names)
    out[LINE] = pc.cast(table.column(LINE), pa.int64())
    return _as_table(out)


def _drop_empty_extras(
    cols: dict[str, pa.ChunkedArray | pa.Array], contract: Sequence[str]
) -> dict[str, pa.ChunkedArray | pa.Array]:
    keep = set(contract)
    return {
        k: v for k, v in cols.items() if k in keep or v.null_count < len(v)
    }


def _as_table(cols: dict[str, pa.ChunkedArray | pa.Array]) -> pa.Table:
    arrays = [
        v if k == LINE else pc.cast(v, pa.string()) for k, v in cols.items()
    ]
    return pa.table(arrays, names=list(cols.keys()))
