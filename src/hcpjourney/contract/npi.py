"""US National Provider Identifier checks (Luhn over the 80840 card-issuer prefix)."""

from __future__ import annotations

NPI_PREFIX = "80840"


def luhn_check_digit(body: str) -> int:
    """Check digit that makes ``body + digit`` pass the Luhn algorithm."""
    total = 0
    # Walking from the right, the digit next to the (future) check digit is doubled.
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return (10 - total % 10) % 10


def npi_check_digit(first9: str) -> int:
    """Tenth digit of an NPI whose first nine digits are ``first9``."""
    return luhn_check_digit(NPI_PREFIX + first9)


def is_valid_npi(value: str | None) -> bool:
    """True for a 10-digit NPI whose last digit is the Luhn check over prefix 80840."""
    if value is None or len(value) != 10 or not (value.isascii() and value.isdigit()):
        return False
    return npi_check_digit(value[:9]) == int(value[9])


def make_npi(first9: int | str) -> str:
    """A valid NPI from nine leading digits (the first must be 1 or 2 for real NPIs)."""
    s = f"{int(first9):09d}" if not isinstance(first9, str) else first9
    return s + str(npi_check_digit(s))
