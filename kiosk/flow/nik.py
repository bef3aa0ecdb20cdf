"""Checks a typed NIK (Nomor Induk Kependudukan) before the kiosk looks it up.

A NIK is 16 digits, ``PP RR DD ddmmyy ssss``: province, regency/city and
district codes, the date of birth (women add 40 to the day) and a serial.
Problems are returned as :class:`NikError` values, whose values are i18n keys,
so a screen can show every mistake at once::

    >>> check = check_nik("3201010203900001", today=datetime.date(2025, 1, 1))
    >>> check.ok, check.nik.sex, check.nik.birth_date
    (True, 'M', datetime.date(1990, 3, 2))
"""

from __future__ import annotations

import calendar
import datetime
import enum
from dataclasses import dataclass
from typing import Literal

NIK_LENGTH = 16
FEMALE_DAY_OFFSET = 40

# Kemendagri province codes (Permendagri 72/2019; Papua split per Kepmendagri 100.1.1-6117/2022).
PROVINCE_CODES = frozenset(
    {
        "11", "12", "13", "14", "15", "16", "17", "18", "19",  # Sumatra
        "21",  # Kepulauan Riau
        "31", "32", "33", "34", "35", "36",  # Java
        "51", "52", "53",  # Bali, Nusa Tenggara
        "61", "62", "63", "64", "65",  # Kalimantan
        "71", "72", "73", "74", "75", "76",  # Sulawesi
        "81", "82",  # Maluku
        # 91 Papua, 92 Papua Barat, 93 Selatan, 94 Tengah, 95 Pegunungan, 96 Barat Daya;
        # 94 also heads NIKs issued in Papua under its old (BPS) code, so it stays valid.
        "91", "92", "93", "94", "95", "96",
    }
)  # fmt: skip


class NikError(enum.StrEnum):
    """One problem with a typed NIK; the value is its i18n key."""

    EMPTY = "nik.error.empty"
    NOT_DIGITS = "nik.error.not_digits"
    TOO_SHORT = "nik.error.too_short"
    TOO_LONG = "nik.error.too_long"
    PROVINCE = "nik.error.province"
    REGENCY = "nik.error.regency"
    DISTRICT = "nik.error.district"
    BIRTH_DAY = "nik.error.birth_day"
    BIRTH_MONTH = "nik.error.birth_month"
    BIRTH_DATE = "nik.error.birth_date"  # day/month don't form a real date
    BIRTH_FUTURE = "nik.error.birth_future"  # or implausible age
    SERIAL = "nik.error.serial"


@dataclass(frozen=True)
class Nik:
    """A valid NIK split into its parts; codes are the 2-digit segments as typed."""

    digits: str
    province: str
    regency: str
    district: str
    birth_date: datetime.date
    sex: Literal["M", "F"]
    serial: str

    def grouped(self) -> str:
        """All 16 digits in groups of four, e.g. ``3201 0102 0390 0001``."""
        return " ".join(self.digits[i : i + 4] for i in range(0, NIK_LENGTH, 4))

    def masked(self) -> str:
        """Only the first and last four digits, e.g. ``3201 •••• •••• 0001``."""
        # For screens and receipts: the middle eight hold the birth date, which passers-by
        # should not read off the screen.
        return f"{self.digits[:4]} •••• •••• {self.digits[-4:]}"


@dataclass(frozen=True)
class NikCheck:
    """The outcome of :func:`check_nik`: a :class:`Nik` when valid, else the errors found."""

    nik: Nik | None
    errors: tuple[NikError, ...]

    @property
    def ok(self) -> bool:
        """True when the NIK has no errors."""
        return not self.errors


def _birth_year(yy: int, today: datetime.date) -> int:
    """The latest year ending in ``yy`` that is not after ``today``'s year."""
    return today.year - (today.year - yy) % 100


def check_nik(text: str, today: datetime.date | None = None) -> NikCheck:
    """Validate a typed NIK, reporting every error found in the order of its digits."""
    today = today or datetime.date.today()
    digits = text.strip()
    # Shape errors stop the check: the field positions below mean nothing without 16 digits.
    if not digits:
        return NikCheck(None, (NikError.EMPTY,))
    # isdigit() alone would accept other scripts' digits (e.g. Arabic-Indic) and superscripts.
    if not (digits.isascii() and digits.isdigit()):
        return NikCheck(None, (NikError.NOT_DIGITS,))
    if len(digits) < NIK_LENGTH:
        return NikCheck(None, (NikError.TOO_SHORT,))
    if len(digits) > NIK_LENGTH:
        return NikCheck(None, (NikError.TOO_LONG,))

    province, regency, district = digits[0:2], digits[2:4], digits[4:6]
    dd, mm, yy, serial = int(digits[6:8]), int(digits[8:10]), int(digits[10:12]), digits[12:]
    errors: list[NikError] = []
    if province not in PROVINCE_CODES:
        errors.append(NikError.PROVINCE)
    if regency == "00":
        errors.append(NikError.REGENCY)
    if district == "00":
        errors.append(NikError.DISTRICT)

    sex: Literal["M", "F"] = "F" if dd > FEMALE_DAY_OFFSET else "M"
    day = dd - FEMALE_DAY_OFFSET if sex == "F" else dd
    day_ok = 1 <= day <= 31
    month_ok = 1 <= mm <= 12
    if not day_ok:
        errors.append(NikError.BIRTH_DAY)
    if not month_ok:
        errors.append(NikError.BIRTH_MONTH)
    birth_date: datetime.date | None = None
    if day_ok and month_ok:
        # The century must be settled first: 29 Feb 00 exists in 2000 but not in 1900.
        year = _birth_year(yy, today)
        if day > calendar.monthrange(year, mm)[1]:
            errors.append(NikError.BIRTH_DATE)
        else:
            birth_date = datetime.date(year, mm, day)
            # The century rule puts birth at most 99 years back, so the 120-year age limit
            # always holds; only a date later in the current year can still be in the future.
            if birth_date > today:
                errors.append(NikError.BIRTH_FUTURE)

    if serial == "0000":
        errors.append(NikError.SERIAL)

    if errors or birth_date is None:
        return NikCheck(None, tuple(errors))
    nik = Nik(digits, province, regency, district, birth_date, sex, serial)
    return NikCheck(nik, ())
