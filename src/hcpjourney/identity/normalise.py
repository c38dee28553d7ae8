"""Standardised linkage fields from contract hcps records.

Linkage compares normalised values, never the raw ones: names lower-cased with
accents and punctuation removed, nickname groups, a phonetic key, e-mail lower
case, NPI only when checksum-valid, five-digit ZIP, CMS taxonomy paths reduced
to their last segment. Work is done once per distinct value (names, cities and
specialties repeat a lot), so a million records take seconds.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from functools import lru_cache, partial

import pyarrow as pa
import pyarrow.compute as pc

from hcpjourney.contract.npi import is_valid_npi
from hcpjourney.identity.nicknames import name_groups

# the hcps columns linkage reads
INPUT_COLUMNS = (
    "record_id", "source", "npi", "first_name", "middle_name", "last_name", "credential",
    "specialty", "organization", "address_line1", "city", "state", "postal_code", "email", "phone",
)

# The linkage table: one row per record. Name and description of every column.
LINKAGE_COLUMNS: dict[str, str] = {
    "record_id": "the record (Splink's unique id)",
    "source": "source system",
    "npi": "checksum-valid NPI",
    "email": "e-mail, lower case",
    "phone": "last ten digits of the phone number",
    "first_name": "first given name: letters only, lower case",
    "first_key": "the (first) formal name the first name stands for: Bill -> william",
    "first_key2": "a second formal name for an ambiguous nickname (Pat -> patrick)",
    "first_key3": "a third one (Katie -> catherine, katherine, kathleen)",
    "first_initial": "first letter of the first name",
    "middle_initial": "first letter of the middle name",
    "last_name": "family name: letters only, lower case, no spaces",
    "last_token": "first part of a compound family name",
    "last_initial": "first letter of the family name",
    "last_soundex": "Soundex code of the family name",
    "city": "city, letters only",
    "state": "two-letter state",
    "zip5": "first five digits of the postal code",
    "address": "house number and first word of the street",
    "specialty": "specialty: last segment of a taxonomy path, lower case, synonyms unified",
    "specialty_parent": "the segment above the leaf in a taxonomy path",
    "organization": "organisation name, normalised",
    "credential": "credential letters (md, do, np, ...)",
}

_SUFFIXES = frozenset({"jr", "sr", "ii", "iii", "iv", "md", "do", "phd", "dds", "mba", "esq"})
_ORG_NOISE = frozenset({"the", "pllc", "llc", "inc", "pc", "pa", "ltd", "corp", "co"})
# Generic top levels of the provider taxonomy carry no information about the person.
_TAXONOMY_ROOTS = frozenset({
    "allopathic and osteopathic physicians", "physician assistants and advanced practice nursing "
    "providers", "nursing service providers", "pharmacy service providers", "dental providers",
    "other service providers", "behavioral health and social service providers",
})
# CMS taxonomy names -> the names CRM systems use for the same specialty.
SPECIALTY_SYNONYMS: dict[str, str] = {
    "cardiovascular disease": "cardiology",
    "clinical cardiac electrophysiology": "electrophysiology",
    "cardiac electrophysiology": "electrophysiology",
    "endocrinology diabetes and metabolism": "endocrinology",
    "family practice": "family medicine",
    "geriatric medicine": "geriatric medicine",
    "pharmacist": "clinical pharmacy",
    "pharmacotherapy": "clinical pharmacy",
    "hematology and oncology": "hematology oncology",
    "obstetrics and gynecology": "obstetrics gynecology",
    "orthopaedic surgery": "orthopedic surgery",
}
_SOUNDEX = {**dict.fromkeys("bfpv", "1"), **dict.fromkeys("cgjkqsxz", "2"),
            **dict.fromkeys("dt", "3"), "l": "4", **dict.fromkeys("mn", "5"), "r": "6"}


@lru_cache(maxsize=65536)
def fold(text: str) -> str:
    """Lower case ASCII words: accents dropped, '&' spelled out, other punctuation a space."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).lower()
    text = text.replace("&", " and ").replace("'", "").replace("’", "")
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text).split())


def _name_tokens(text: str) -> list[str]:
    return [t for t in re.sub(r"[^a-z ]+", " ", fold(text)).split() if t]


def soundex(name: str) -> str | None:
    """American Soundex of a letters-only lower-case name."""
    if not name:
        return None
    out = name[0].upper()
    last = _SOUNDEX.get(name[0], "")
    for ch in name[1:]:
        code = _SOUNDEX.get(ch, "")
        if code and code != last:
            out += code
        if ch not in "hw":
            last = code
    return (out + "000")[:4]


def first_parts(text: str) -> tuple[str, str | None] | None:
    """(first given name, initial of a second given name) from a first-name field."""
    toks = _name_tokens(text)
    if not toks:
        return None
    return toks[0], (toks[1][0] if len(toks) > 1 else None)


def last_parts(text: str) -> tuple[str, str] | None:
    """(family name without spaces, its first part) from a last-name field."""
    toks = [t for t in _name_tokens(text) if t not in _SUFFIXES] or _name_tokens(text)
    if not toks:
        return None
    return "".join(toks), toks[0]


def specialty_parts(text: str) -> tuple[str, str | None] | None:
    """(normalised leaf specialty, the segment above it) of a specialty or taxonomy path."""
    segs = []
    for seg in text.split("|"):
        s = fold(seg)
        if s and s not in _TAXONOMY_ROOTS:
            segs.append(SPECIALTY_SYNONYMS.get(s, s))
    if not segs:
        return None
    return segs[-1], (segs[-2] if len(segs) > 1 else None)


def organization_key(text: str) -> str | None:
    toks = ["st" if t == "saint" else t for t in fold(text).split() if t not in _ORG_NOISE]
    return " ".join(toks) or None


def address_key(text: str) -> str | None:
    """House number and the next word: '2100 WEBSTER ST STE 516' -> '2100 webster'."""
    toks = fold(text).split()
    for i, t in enumerate(toks[:-1]):
        if t[0].isdigit():
            return f"{t} {toks[i + 1]}"
    return None


def city_key(text: str) -> str | None:
    toks = ["st" if t in ("saint", "ste") else t for t in fold(text).split()]
    return "".join(toks) or None


def _group(first: str, i: int) -> str | None:
    """The i-th formal name ``first`` stands for (None for initials and beyond the last)."""
    if len(first) < 2:
        return None
    groups = name_groups(first)
    return groups[i] if i < len(groups) else None


def _map_unique(arr: pa.ChunkedArray | pa.Array, fn: Callable[[str], object], typ: pa.DataType
                ) -> pa.Array:
    """Apply ``fn`` once per distinct non-null value of a string array."""
    enc = pc.dictionary_encode(arr).combine_chunks() if isinstance(arr, pa.ChunkedArray) \
        else pc.dictionary_encode(arr)
    values = [fn(v) if v is not None else None for v in enc.dictionary.to_pylist()]
    return pc.take(pa.array(values, typ), enc.indices)


def _clean(arr: pa.ChunkedArray) -> pa.ChunkedArray:
    """Trimmed text with empty strings as nulls."""
    t = pc.utf8_trim_whitespace(arr)
    return pc.if_else(pc.equal(t, ""), pa.scalar(None, pa.string()), t)


def linkage_table(hcps: pa.Table) -> pa.Table:
    """The linkage table (``LINKAGE_COLUMNS``) of an Arrow table of hcps records."""
    col = {c: _clean(hcps.column(c).cast(pa.string())) for c in INPUT_COLUMNS}
    first = _map_unique(col["first_name"], first_parts,
                        pa.struct([("f", pa.string()), ("m", pa.string())]))
    first_name = pc.struct_field(first, [0])
    middle_from_first = pc.struct_field(first, [1])
    middle = _map_unique(col["middle_name"], lambda s: (first_parts(s) or ("", None))[0][:1] or None,
                         pa.string())
    last = _map_unique(col["last_name"], last_parts,
                       pa.struct([("l", pa.string()), ("t", pa.string())]))
    last_name = pc.struct_field(last, [0])
    spec = _map_unique(col["specialty"], specialty_parts,
                       pa.struct([("s", pa.string()), ("p", pa.string())]))
    email = pc.utf8_lower(col["email"])
    email = pc.if_else(pc.match_substring(email, "@"), email, pa.scalar(None, pa.string()))
    phone = _map_unique(col["phone"], lambda s: (re.sub(r"\D", "", s)[-10:] or None)
                        if len(re.sub(r"\D", "", s)) >= 10 else None, pa.string())
    npi = _map_unique(col["npi"], lambda s: s if is_valid_npi(s) else None, pa.string())
    state = _map_unique(col["state"], lambda s: s.upper() if re.fullmatch(r"[A-Za-z]{2}", s) else None,
                        pa.string())
    zip5 = _map_unique(col["postal_code"], lambda s: re.sub(r"\D", "", s)[:5]
                       if len(re.sub(r"\D", "", s)) >= 5 else None, pa.string())
    data = {
        "record_id": col["record_id"],
        "source": col["source"],
        "npi": npi,
        "email": email,
        "phone": phone,
        "first_name": first_name,
        **{key: _map_unique(first_name, partial(_group, i=i), pa.string())
           for i, key in enumerate(("first_key", "first_key2", "first_key3"))},
        "first_initial": pc.utf8_slice_codeunits(first_name, 0, 1),
        "middle_initial": pc.coalesce(middle, middle_from_first),
        "last_name": last_name,
        "last_token": pc.struct_field(last, [1]),
        "last_initial": pc.utf8_slice_codeunits(last_name, 0, 1),
        "last_soundex": _map_unique(last_name, soundex, pa.string()),
        "city": _map_unique(col["city"], city_key, pa.string()),
        "state": state,
        "zip5": zip5,
        "address": _map_unique(col["address_line1"], address_key, pa.string()),
        "specialty": pc.struct_field(spec, [0]),
        "specialty_parent": pc.struct_field(spec, [1]),
        "organization": _map_unique(col["organization"], organization_key, pa.string()),
        "credential": _map_unique(col["credential"], lambda s: re.sub(r"[^a-z]", "", s.lower()) or None,
                                  pa.string()),
    }
    return pa.table(data)
