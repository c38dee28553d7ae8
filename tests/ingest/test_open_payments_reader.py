"""CMS Open Payments reader: the real Iowa and San Francisco files, a layout (c) fixture."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from hcpjourney.contract.npi import is_valid_npi
from hcpjourney.contract.schemas import HCPS, INTERACTIONS, PROFESSIONS
from hcpjourney.ingest.open_payments import (
    OpenPaymentsFormatError,
    ReaderOutput,
    looks_like_open_payments,
    looks_like_open_payments_profiles,
    read_open_payments,
)
from realdata_path import REALDATA

IOWA = REALDATA / "open_payments_iowa"
IOWA_PAYMENTS = IOWA / "ia_top_physicians_general_payments_2013_2015.csv"
IOWA_PROFILES = IOWA / "ia_most_paid_docs_profiles.csv"
SF_PAYMENTS = REALDATA / "open_payments_sf" / "op_general_2013_sf_3000.csv"
FIXTURE_C = Path(__file__).parent / "fixtures" / "op_general_covered_recipient_5.csv"


SPEAKER = (
    "Compensation for services other than consulting, including serving as faculty or as a "
    "speaker at a venue other than a continuing education program"
)


def _split(outputs: list[ReaderOutput]) -> tuple[ReaderOutput, ReaderOutput]:
    by = {o.table: o for o in outputs}
    assert set(by) == {"hcps", "interactions"}
    return by["hcps"], by["interactions"]


def _check_shape(out: ReaderOutput, names: list[str]) -> None:
    table = out.data
    assert table.column_names[: len(names)] == names
    assert table.schema.field("_line").type == pa.int64()
    for field in table.schema:
        if field.name != "_line":
            assert field.type == pa.string(), field.name


@pytest.fixture(scope="module")
def iowa() -> tuple[ReaderOutput, ReaderOutput]:
    return _split(read_open_payments(IOWA_PAYMENTS))


@pytest.fixture(scope="module")
def sf() -> tuple[ReaderOutput, ReaderOutput]:
    return _split(read_open_payments(SF_PAYMENTS))


# --- Iowa: 2013-2015 layout without names + profiles file -----------------------------


def test_iowa_counts_and_files(iowa: tuple[ReaderOutput, ReaderOutput]) -> None:
    hcps, inter = iowa
    assert inter.data.num_rows == 126_084
    # 2,048 profiles, 2,037 of them paid in this file; the other 11 only have research
    # payments (g == 0) and are not recipients of this file.
    assert hcps.data.num_rows == 2_037
    assert hcps.file == IOWA_PROFILES.name
    assert inter.file == IOWA_PAYMENTS.name
    _check_shape(hcps, HCPS.names)
    _check_shape(inter, INTERACTIONS.names)


def test_iowa_same_with_explicit_profiles(iowa: tuple[ReaderOutput, ReaderOutput]) -> None:
    hcps, _ = _split(read_open_payments(IOWA_PAYMENTS, profiles=IOWA_PROFILES))
    assert hcps.data.equals(iowa[0].data)


def test_iowa_keys_and_references(iowa: tuple[ReaderOutput, ReaderOutput]) -> None:
    hcps, inter = iowa
    h, i = hcps.data, inter.data
    assert pc.count_distinct(i["event_id"]).as_py() == i.num_rows
    assert pc.count_distinct(h["record_id"]).as_py() == h.num_rows
    assert pc.all(pc.is_in(i["record_id"], value_set=h["record_id"])).as_py()
    assert h["last_name"].null_count == 0
    assert pc.all(pc.starts_with(h["record_id"], "open_payments:")).as_py()
    assert set(pc.unique(h["source"]).to_pylist()) == {"open_payments"}


def test_iowa_values_dates_and_mix(iowa: tuple[ReaderOutput, ReaderOutput]) -> None:
    i = iowa[1].data
    raw = pacsv.read_csv(IOWA_PAYMENTS)
    total = pc.sum(raw["Total_Amount_of_Payment_USDollars"]).as_py()
    values = pc.cast(i["value_usd"], pa.float64())
    assert values.null_count == 0
    assert pc.sum(values).as_py() == pytest.approx(total, abs=0.005)
    assert pc.sum(values).as_py() == pytest.approx(27_301_946.84, abs=0.005)

    # every date is ISO, none in the future, range as documented
    assert pc.all(pc.match_substring_regex(i["ts"], r"^\d{4}-\d{2}-\d{2}$")).as_py()
    assert pc.min(i["ts"]).as_py() == "2013-08-01"
    assert pc.max(i["ts"]).as_py() == "2015-12-31"
    assert pc.max(i["ts"]).as_py() <= dt.date.today().isoformat()

    mix = {d["values"]: d["counts"] for d in pc.value_counts(i["topic"]).to_pylist()}
    assert mix["Food and Beverage"] == 108_548
    assert mix["Travel and Lodging"] == 7_886
    assert mix["Education"] == 3_291
    assert mix[SPEAKER] == 3_132
    assert mix["Consulting Fee"] == 1_454
    assert mix["Gift"] == 817
    assert mix["Honoraria"] == 311
    assert sum(mix.values()) == 126_084

    assert set(pc.unique(i["channel"]).to_pylist()) == {"payment"}
    assert set(pc.unique(i["action"]).to_pylist()) == {"completed"}
    # README: 592 manufacturers = distinct manufacturer ids (626 distinct name spellings)
    assert pc.count_distinct(i["manufacturer_id"]).as_py() == 592


def test_iowa_rows_and_lines(iowa: tuple[ReaderOutput, ReaderOutput]) -> None:
    hcps, inter = iowa
    first = inter.data.slice(0, 1).to_pylist()[0]
    # line 2 of the file: 1000922,Merck ...,175.00,11/06/2013,...,171850346,Consulting Fee
    assert first["event_id"] == "171850346"
    assert first["record_id"] == "open_payments:1000922"
    assert first["ts"] == "2013-11-06"
    assert first["value_usd"] == "175.00"
    assert first["topic"] == "Consulting Fee"
    assert first["manufacturer"] == "Merck Sharp & Dohme Corporation"
    assert first["form_of_payment"] == "Cash or cash equivalent"
    assert first["drug_1"] == "MK-3102"
    assert first["_line"] == 2
    assert inter.data["_line"].to_pylist()[-1] == 126_085

    h = hcps.data.to_pylist()
    brett = next(r for r in h if r["record_id"] == "open_payments:12")
    assert brett["_line"] == 2  # line of the profiles file
    assert (brett["first_name"], brett["last_name"]) == ("BRETT", "LOCKMAN")
    assert brett["specialty"] == "Allopathic & Osteopathic Physicians|Pain Medicine|Pain Medicine"
    assert (brett["state"], brett["postal_code"], brett["country"]) == ("IA", "52807", "US")
    assert brett["profession"] == "physician"
    dentists = [r for r in h if (r["specialty"] or "").startswith("Dental Providers")]
    assert dentists and all(r["credential"] == "DDS" for r in dentists)
    assert {r["profession"] for r in h} <= {*PROFESSIONS, None}


# --- San Francisco: full 2013 CMS layout with names ---------------------------------


def test_sf_full_layout(sf: tuple[ReaderOutput, ReaderOutput]) -> None:
    hcps, inter = sf
    h, i = hcps.data, inter.data
    _check_shape(hcps, HCPS.names)
    _check_shape(inter, INTERACTIONS.names)
    assert hcps.file == inter.file == SF_PAYMENTS.name
    assert i.num_rows == 3_000
    assert pc.count_distinct(i["event_id"]).as_py() == 3_000
    assert h.num_rows == 1_087  # distinct Physician_Profile_ID
    assert h["last_name"].null_count == 0
    assert h["npi"].null_count == h.num_rows  # no NPI column in program year 2013

    lisa = next(r for r in h.to_pylist() if r["record_id"] == "open_payments:174740")
    assert (lisa["first_name"], lisa["last_name"]) == ("LISA", "CAPALDINI")
    assert lisa["credential"] == "MD" and lisa["profession"] == "physician"
    assert lisa["address_line1"] == "45 CASTRO ST"
    assert (lisa["city"], lisa["state"], lisa["postal_code"]) == ("SAN FRANCISCO", "CA", "94114")
    assert lisa["_line"] == 2

    # 29 payments to 6 teaching hospitals: not HCPs, so they point to no hcps record
    known = pc.is_in(i["record_id"], value_set=h["record_id"])
    unknown = i.filter(pc.invert(known))
    assert unknown.num_rows == 29
    assert pc.all(pc.starts_with(unknown["record_id"], "open_payments:teaching_hospital:")).as_py()
    assert pc.all(pc.match_substring_regex(i["ts"], r"^\d{4}-\d{2}-\d{2}$")).as_py()
    raw = pacsv.read_csv(SF_PAYMENTS)
    total = pc.sum(raw["total_amount_of_payment_usdollars"]).as_py()
    assert pc.sum(pc.cast(i["value_usd"], pa.float64())).as_py() == pytest.approx(total)


def test_sf_from_parquet(tmp_path: Path, sf: tuple[ReaderOutput, ReaderOutput]) -> None:
    target = tmp_path / "op_general_2013_sf.parquet"
    pq.write_table(pacsv.read_csv(SF_PAYMENTS), target)
    assert looks_like_open_payments(target)
    hcps, inter = _split(read_open_payments(target))
    assert inter.data.num_rows == 3_000
    assert hcps.data.num_rows == 1_087
    assert inter.data["ts"].to_pylist() == sf[1].data["ts"].to_pylist()


# --- layout (c): Covered_Recipient_* columns -----------------------------------------


def test_covered_recipient_layout() -> None:
    hcps, inter = _split(read_open_payments(FIXTURE_C))
    _check_shape(hcps, HCPS.names)
    _check_shape(inter, INTERACTIONS.names)
    h = {r["record_id"]: r for r in hcps.data.to_pylist()}
    assert set(h) == {"open_payments:9000001", "open_payments:9000002", "open_payments:9000003"}
    assert all(is_valid_npi(r["npi"]) for r in h.values())

    jane = h["open_payments:9000001"]
    assert (jane["credential"], jane["profession"]) == ("MD", "physician")
    assert jane["specialty"] == (
        "Allopathic & Osteopathic Physicians|Internal Medicine|Cardiovascular Disease"
    )
    assert (jane["postal_code"], jane["country"]) == ("02115", "US")
    assert jane["spelling_variants"] == "2"  # a later row adds a middle initial
    assert jane["middle_name"] is None  # first-seen spelling kept
    assert jane["_line"] == 2

    robin = h["open_payments:9000002"]
    assert (robin["credential"], robin["profession"]) == ("NP", "nurse_practitioner")
    alex = h["open_payments:9000003"]
    assert (alex["credential"], alex["postal_code"]) == ("DO", "60611")

    rows = inter.data.to_pylist()
    assert [r["event_id"] for r in rows] == [f"90000000{k}" for k in range(1, 6)]
    assert rows[0]["ts"] == "2022-04-12"
    assert rows[0]["product_1"] == "CARDIOZEN"
    assert rows[0]["program_year"] == "2022"
    assert rows[3]["travel_city"] == "ORLANDO"
    assert rows[4]["record_id"] == "open_payments:teaching_hospital:8801"
    assert [r["_line"] for r in rows] == [2, 3, 4, 5, 6]


# --- detection and errors --------------------------------------------------------------


def test_detection() -> None:
    assert looks_like_open_payments(FIXTURE_C)
    if IOWA_PAYMENTS.exists():
        assert looks_like_open_payments(IOWA_PAYMENTS)
        assert looks_like_open_payments(SF_PAYMENTS)
        assert not looks_like_open_payments(IOWA_PROFILES)
        assert looks_like_open_payments_profiles(IOWA_PROFILES)


def test_not_open_payments(tmp_path: Path) -> None:
    other = tmp_path / "hcps.csv"
    other.write_text("record_id,source,last_name\ncrm:1,crm,SMITH\n")
    assert not looks_like_open_payments(other)
    with pytest.raises(OpenPaymentsFormatError, match="missing column") as err:
        read_open_payments(other)
    assert "Date_of_Payment" in str(err.value)
    assert "\n" not in str(err.value)
    assert isinstance(err.value, ValueError)


def test_missing_file(tmp_path: Path) -> None:
    assert not looks_like_open_payments(tmp_path / "nope.csv")
    with pytest.raises(OpenPaymentsFormatError):
        read_open_payments(tmp_path / "nope.csv")


_A_HEADER = (
    "Physician_Profile_ID,Applicable_Manufacturer_or_Applicable_GPO_Making_Payment_Name,"
    "Total_Amount_of_Payment_USDollars,Date_of_Payment,Form_of_Payment_or_Transfer_of_Value,"
    "Record_ID,Nature_of_Payment_or_Transfer_of_Value,Contextual_Information\n"
)


def test_layout_a_without_profiles(tmp_path: Path) -> None:
    pay = tmp_path / "payments.csv"
    pay.write_text(_A_HEADER + "1,Acme,10.00,01/02/2014,Cash,77,Gift,\n")
    with pytest.raises(OpenPaymentsFormatError, match="profiles"):
        read_open_payments(pay)


def test_layout_a_lines_dates_and_unknown_profiles(tmp_path: Path) -> None:
    pay = tmp_path / "payments.csv"
    pay.write_text(
        _A_HEADER
        + '1,Acme,10.00,1/2/2014,Cash,71,Gift,"two\nlines"\n'
        + "2,Acme,5.50,02/30/2014,Cash,72,Gift,\n"  # impossible date: left for quarantine
        + "3,Acme,7.25,2014-03-04,Cash,73,Gift,\n"  # profile 3 has no profile row
    )
    profiles = tmp_path / "profiles.csv"
    profiles.write_text(
        "fn,ln,add,city,zip,st,spec,id,lat,long\n"
        "ANA,DOE,1 A ST,NEWARK,7102,New Jersey,Dental Providers|Dentist,1,40.7,-74.2\n"
        "BO,ROE,2 B ST,AMES,50010-1234,Iowa,Allopathic & Osteopathic Physicians|Surgery,2,,\n"
        "CY,POE,3 C ST,AMES,50010,Iowa,Allopathic & Osteopathic Physicians|Surgery,9,,\n"
    )
    hcps, inter = _split(read_open_payments(pay))  # profiles found next to it
    rows = inter.data.to_pylist()
    assert [r["ts"] for r in rows] == ["2014-01-02", "02/30/2014", "2014-03-04"]
    assert [r["_line"] for r in rows] == [2, 4, 5]  # a quoted newline shifts later lines
    h = {r["record_id"]: r for r in hcps.data.to_pylist()}
    assert set(h) == {"open_payments:1", "open_payments:2"}  # profile 9 was not paid
    ana = h["open_payments:1"]
    assert (ana["state"], ana["postal_code"], ana["credential"]) == ("NJ", "07102", "DDS")
    assert ana["latitude"] == "40.7"
    assert ana["_line"] == 2
    assert h["open_payments:2"]["postal_code"] == "50010"
    # the payment of profile 3 references a record no file describes: the loader
    # quarantines it as an unknown record
    assert rows[2]["record_id"] == "open_payments:3"


def test_layout_a_two_profile_files_is_ambiguous(tmp_path: Path) -> None:
    pay = tmp_path / "payments.csv"
    pay.write_text(_A_HEADER + "1,Acme,10.00,01/02/2014,Cash,77,Gift,\n")
    prof = tmp_path / "p1.csv"
    prof.write_text("fn,ln,id\nANA,DOE,1\n")
    shutil.copy(prof, tmp_path / "p2.csv")
    with pytest.raises(OpenPaymentsFormatError, match="several"):
        read_open_payments(pay)
    hcps, _ = _split(read_open_payments(pay, profiles=prof))
    assert hcps.data["last_name"].to_pylist() == ["DOE"]
