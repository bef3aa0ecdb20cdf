"""Tests for kiosk.flow.nik: NIK parsing, every error, century and leap-year rules, catalogs."""

from __future__ import annotations

import datetime
import string
import tomllib
from pathlib import Path

import pytest

from kiosk.flow.nik import PROVINCE_CODES, Nik, NikError, check_nik

TODAY = datetime.date(2025, 6, 15)
I18N = Path(__file__).resolve().parent.parent / "kiosk" / "i18n"
E = NikError


def make(
    pp: str = "32",
    rr: str = "01",
    ds: str = "01",
    dd: str = "02",
    mm: str = "03",
    yy: str = "90",
    serial: str = "0001",
) -> str:
    """A NIK from its segments; the defaults give a valid man's NIK born 2 March 1990."""
    return pp + rr + ds + dd + mm + yy + serial


def errors_of(text: str, today: datetime.date = TODAY) -> tuple[NikError, ...]:
    """The errors check_nik reports for ``text``."""
    return check_nik(text, today=today).errors


# --- valid NIKs ---------------------------------------------------------------------------


def test_valid_male() -> None:
    check = check_nik("3201010203900001", today=TODAY)
    assert check.ok
    assert check.errors == ()
    assert check.nik == Nik(
        digits="3201010203900001",
        province="32",
        regency="01",
        district="01",
        birth_date=datetime.date(1990, 3, 2),
        sex="M",
        serial="0001",
    )


def test_valid_female_day_has_40_added() -> None:
    check = check_nik("3578014507850123", today=TODAY)
    assert check.ok
    assert check.nik is not None
    assert check.nik.sex == "F"
    assert check.nik.birth_date == datetime.date(1985, 7, 5)
    assert (check.nik.province, check.nik.regency, check.nik.district) == ("35", "78", "01")
    assert check.nik.serial == "0123"


@pytest.mark.parametrize(
    ("dd", "sex", "day"),
    [("01", "M", 1), ("31", "M", 31), ("41", "F", 1), ("71", "F", 31)],
)
def test_day_bounds_decide_sex(dd: str, sex: str, day: int) -> None:
    check = check_nik(make(dd=dd, mm="01"), today=TODAY)
    assert check.ok, check.errors
    assert check.nik is not None
    assert check.nik.sex == sex
    assert check.nik.birth_date.day == day


@pytest.mark.parametrize(
    "text", [" 3201010203900001", "3201010203900001\n", "\t 3201010203900001  "]
)
def test_surrounding_whitespace_is_stripped(text: str) -> None:
    check = check_nik(text, today=TODAY)
    assert check.ok
    assert check.nik is not None
    assert check.nik.digits == "3201010203900001"


@pytest.mark.parametrize("pp", sorted(PROVINCE_CODES))
def test_every_province_code_is_accepted(pp: str) -> None:
    assert errors_of(make(pp=pp)) == ()


@pytest.mark.parametrize("pp", ["93", "94", "95", "96"])
def test_new_papua_provinces_are_known(pp: str) -> None:
    assert pp in PROVINCE_CODES


def test_province_set_has_the_38_provinces() -> None:
    assert len(PROVINCE_CODES) == 38


def test_default_today_is_the_real_date() -> None:
    born_today = datetime.date.today()
    text = make(dd=f"{born_today.day:02}", mm=f"{born_today.month:02}", yy=f"{born_today:%y}")
    check = check_nik(text)
    assert check.ok, check.errors
    assert check.nik is not None
    assert check.nik.birth_date == born_today


# --- shape errors: only that one is reported -----------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", E.EMPTY),
        ("   \n", E.EMPTY),
        ("3201a10203900001", E.NOT_DIGITS),
        ("3201 0102 0390 0001", E.NOT_DIGITS),
        ("3201-0102-0390-0001", E.NOT_DIGITS),
        ("12a", E.NOT_DIGITS),
        ("\u0663\u0662\u0660\u0661" * 4, E.NOT_DIGITS),  # Arabic-Indic digits
        ("32010102039000\u00b9\u00b9", E.NOT_DIGITS),  # superscript ones pass str.isdigit()
        ("1", E.TOO_SHORT),
        ("320101020390001", E.TOO_SHORT),
        ("32010102039000011", E.TOO_LONG),
        ("0" * 40, E.TOO_LONG),
    ],
)
def test_shape_errors_stand_alone(text: str, expected: NikError) -> None:
    check = check_nik(text, today=TODAY)
    assert check.errors == (expected,)
    assert not check.ok
    assert check.nik is None


# --- field errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (make(pp="00"), (E.PROVINCE,)),
        (make(pp="10"), (E.PROVINCE,)),
        (make(pp="20"), (E.PROVINCE,)),
        (make(pp="22"), (E.PROVINCE,)),
        (make(pp="37"), (E.PROVINCE,)),
        (make(pp="54"), (E.PROVINCE,)),
        (make(pp="66"), (E.PROVINCE,)),
        (make(pp="77"), (E.PROVINCE,)),
        (make(pp="83"), (E.PROVINCE,)),
        (make(pp="90"), (E.PROVINCE,)),
        (make(pp="97"), (E.PROVINCE,)),
        (make(pp="99"), (E.PROVINCE,)),
        (make(rr="00"), (E.REGENCY,)),
        (make(ds="00"), (E.DISTRICT,)),
        (make(dd="00"), (E.BIRTH_DAY,)),
        (make(dd="32"), (E.BIRTH_DAY,)),
        (make(dd="40"), (E.BIRTH_DAY,)),
        (make(dd="72"), (E.BIRTH_DAY,)),
        (make(dd="99"), (E.BIRTH_DAY,)),
        (make(mm="00"), (E.BIRTH_MONTH,)),
        (make(mm="13"), (E.BIRTH_MONTH,)),
        (make(dd="00", mm="13"), (E.BIRTH_DAY, E.BIRTH_MONTH)),
        (make(dd="31", mm="04"), (E.BIRTH_DATE,)),
        (make(dd="30", mm="02"), (E.BIRTH_DATE,)),
        (make(dd="71", mm="02"), (E.BIRTH_DATE,)),  # a woman's "31 February"
        (make(dd="71", mm="11"), (E.BIRTH_DATE,)),
        (make(serial="0000"), (E.SERIAL,)),
    ],
)
def test_field_errors(text: str, expected: tuple[NikError, ...]) -> None:
    check = check_nik(text, today=TODAY)
    assert check.errors == expected
    assert not check.ok
    assert check.nik is None


@pytest.mark.parametrize("serial", ["0001", "0100", "9999"])
def test_serial_range_is_accepted(serial: str) -> None:
    assert errors_of(make(serial=serial)) == ()


def test_all_errors_are_reported_in_digit_order() -> None:
    assert errors_of("0000000000000000") == (
        E.PROVINCE,
        E.REGENCY,
        E.DISTRICT,
        E.BIRTH_DAY,
        E.BIRTH_MONTH,
        E.SERIAL,
    )


def test_date_errors_come_with_field_errors() -> None:
    text = make(pp="99", rr="00", dd="30", mm="06", yy="25", serial="0000")
    assert errors_of(text) == (E.PROVINCE, E.REGENCY, E.BIRTH_FUTURE, E.SERIAL)


# --- leap years and centuries ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("yy", "today", "ok"),
    [
        ("00", TODAY, True),  # 2000: divisible by 400
        ("24", TODAY, True),
        ("96", TODAY, True),  # 1996
        ("01", TODAY, False),
        ("23", TODAY, False),
        ("00", datetime.date(1999, 12, 31), False),  # 1900: divisible by 100, not by 400
    ],
)
def test_29_february(yy: str, today: datetime.date, ok: bool) -> None:
    for dd in ("29", "69"):  # the same rule for men and women
        errors = errors_of(make(dd=dd, mm="02", yy=yy), today=today)
        assert errors == (() if ok else (E.BIRTH_DATE,))


@pytest.mark.parametrize(
    ("today", "yy", "year"),
    [
        (TODAY, "25", 2025),  # this year's own two digits mean this year
        (TODAY, "00", 2000),
        (TODAY, "24", 2024),
        (TODAY, "26", 1926),  # next year's digits fall back a century
        (TODAY, "99", 1999),
        (datetime.date(2000, 1, 1), "00", 2000),
        (datetime.date(2000, 1, 1), "01", 1901),
        (datetime.date(2000, 1, 1), "99", 1999),
        (datetime.date(2099, 12, 31), "99", 2099),
    ],
)
def test_century_is_the_latest_not_after_today(today: datetime.date, yy: str, year: int) -> None:
    check = check_nik(make(dd="01", mm="01", yy=yy), today=today)
    assert check.ok, check.errors
    assert check.nik is not None
    assert check.nik.birth_date == datetime.date(year, 1, 1)


@pytest.mark.parametrize(
    ("dd", "mm", "yy"),
    [
        ("16", "06", "25"),  # tomorrow
        ("56", "06", "25"),  # tomorrow, a girl
        ("01", "07", "25"),
        ("31", "12", "25"),
    ],
)
def test_birth_date_in_the_future(dd: str, mm: str, yy: str) -> None:
    check = check_nik(make(dd=dd, mm=mm, yy=yy), today=TODAY)
    assert check.errors == (E.BIRTH_FUTURE,)
    assert check.nik is None


@pytest.mark.parametrize(("dd", "mm", "yy"), [("15", "06", "25"), ("01", "01", "25")])
def test_born_today_or_earlier_this_year_is_valid(dd: str, mm: str, yy: str) -> None:
    # A NIK is given at birth, so a baby (age 0) is a valid holder.
    check = check_nik(make(dd=dd, mm=mm, yy=yy), today=TODAY)
    assert check.ok, check.errors


def test_oldest_inferred_age_is_plausible() -> None:
    check = check_nik(make(dd="16", mm="06", yy="26"), today=TODAY)
    assert check.ok, check.errors
    assert check.nik is not None
    assert check.nik.birth_date == datetime.date(1926, 6, 16)


# --- display --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "grouped", "masked"),
    [
        ("3201010203900001", "3201 0102 0390 0001", "3201 •••• •••• 0001"),
        ("3578014507850123", "3578 0145 0785 0123", "3578 •••• •••• 0123"),
    ],
)
def test_grouped_and_masked(text: str, grouped: str, masked: str) -> None:
    nik = check_nik(text, today=TODAY).nik
    assert nik is not None
    assert nik.grouped() == grouped
    assert nik.masked() == masked
    assert text[4:12] not in nik.masked().replace(" ", "")


def test_nik_is_frozen() -> None:
    nik = check_nik("3201010203900001", today=TODAY).nik
    assert nik is not None
    with pytest.raises(AttributeError):
        nik.digits = "0"  # type: ignore[misc]


# --- translation catalogs -------------------------------------------------------------------


def _flatten(prefix: str, table: dict, out: dict[str, str]) -> dict[str, str]:
    for key, value in table.items():
        if isinstance(value, dict):
            _flatten(f"{prefix}.{key}", value, out)
        else:
            out[f"{prefix}.{key}"] = value
    return out


def _catalog(language: str) -> dict[str, str]:
    with (I18N / language / "nik.toml").open("rb") as file:
        return _flatten("nik", tomllib.load(file), {})


def _placeholders(text: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(text) if field is not None}


CATALOGS = {language: _catalog(language) for language in ("id", "en")}


@pytest.mark.parametrize("language", CATALOGS)
@pytest.mark.parametrize("error", list(NikError))
def test_every_error_has_a_message(language: str, error: NikError) -> None:
    assert CATALOGS[language].get(error.value, "").strip()


@pytest.mark.parametrize("language", CATALOGS)
@pytest.mark.parametrize("key", ["nik.entry.title", "nik.entry.hint", "nik.entry.digits_count"])
def test_entry_strings_exist(language: str, key: str) -> None:
    assert CATALOGS[language].get(key, "").strip()


def test_catalogs_have_the_same_keys() -> None:
    assert CATALOGS["id"].keys() == CATALOGS["en"].keys()


@pytest.mark.parametrize("key", sorted(CATALOGS["en"]))
def test_placeholders_match_and_are_allowed(key: str) -> None:
    english, indonesian = CATALOGS["en"][key], CATALOGS["id"][key]
    assert _placeholders(english) == _placeholders(indonesian)
    assert _placeholders(english) <= {"count"}


@pytest.mark.parametrize("language", CATALOGS)
def test_every_string_formats_cleanly(language: str) -> None:
    # The Translator formats any string it is given values for, so no stray braces may remain.
    for text in CATALOGS[language].values():
        formatted = text.format(count=7)
        assert "{" not in formatted
        assert "}" not in formatted


@pytest.mark.parametrize(
    "key", ["nik.error.too_short", "nik.error.too_long", "nik.entry.digits_count"]
)
def test_count_is_shown_where_it_helps(key: str) -> None:
    for language in CATALOGS:
        assert _placeholders(CATALOGS[language][key]) == {"count"}
