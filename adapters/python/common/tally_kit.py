"""Helpers shared by tally's Python adapters, free of the component bindings.

They reproduce what the Rust adapters get from their crates, so that a
Python adapter can write the very same bytes and say the same things:

- `read_config`: a strict JSON config (unknown, duplicate and missing fields
  refused), with serde's wording;
- `ascii_lower`, `csv_field`, `rust_display`, `civil_from_days`: Rust's
  `to_ascii_lowercase`, the adapters' CSV quoting, Rust's `{}` for an `f64`,
  and the calendar date of a day number;
- `debug_variant`: Rust's `{:?}` of a WIT variant, for error messages;
- `document_name`: the name of a subscription's document, as the Rust
  adapters' kit names it.
"""

import hashlib
import json
import math
from decimal import ROUND_HALF_UP, Decimal

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")

# Rust's `char::is_whitespace` (Unicode White_Space), which `str::trim` strips.
# Python's `str.strip()` also strips U+001C..U+001F, so it is not used.
RUST_WHITESPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005"
    "\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


class ConfigError(ValueError):
    """A config that cannot work; `str()` is the reason shown to the operator."""


class _Object(list):
    """A JSON object as its (key, value) pairs in document order, so that
    duplicate keys can be told apart from a plain list."""


def ascii_lower(text):
    """Lower-cases ASCII letters only, as Rust's `to_ascii_lowercase`."""
    return text.translate(_ASCII_LOWER)


def csv_field(value):
    """A CSV field, quoted (quotes doubled) when it holds `,`, `"`, CR or LF."""
    if "," in value or '"' in value or "\n" in value or "\r" in value:
        return '"' + value.replace('"', '""') + '"'
    return value


# Longest document name the host takes (`[A-Za-z0-9._-]{1,128}`).
MAX_DOCUMENT_NAME = 128

_NAME_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")


def document_name(prefix, subscription, suffix):
    """`{prefix}{subscription}{suffix}` when the id is 1 or more of
    `A-Z a-z 0-9 . _ -` and the name fits in 128 bytes; otherwise the id is
    replaced by the first 16 hex digits of the SHA-256 of its UTF-8 bytes
    (as `tally_adapter_kit::document_name`)."""
    raw = subscription.encode()
    if raw and all(b in _NAME_BYTES for b in raw) and (
        len(prefix.encode()) + len(raw) + len(suffix.encode()) <= MAX_DOCUMENT_NAME
    ):
        return f"{prefix}{subscription}{suffix}"
    return f"{prefix}{hashlib.sha256(raw).hexdigest()[:16]}{suffix}"


def rust_display(x):
    """Rust's `format!("{}", x)` of a finite `f64`: the shortest digits that
    read back as `x` (a tie goes up, where Python's `repr` goes to even),
    positional, no exponent, no trailing `.0`."""
    if x == 0:
        return "-0" if math.copysign(1.0, x) < 0 else "0"
    exact = Decimal(x)
    for digits in range(1, 18):
        quantum = Decimal(1).scaleb(exact.adjusted() - digits + 1)
        shortest = exact.quantize(quantum, rounding=ROUND_HALF_UP)
        if float(shortest) == x:
            break
    text = format(shortest, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def civil_from_days(days):
    """`(year, month, day)` of a day number since 1970-01-01 (Howard
    Hinnant's civil-from-days, as the Rust adapters compute it)."""
    z = days + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1_460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (month <= 2), month, day


def debug_variant(kind, case):
    """Rust's `{:?}` of a WIT variant case such as `QueryError_InvalidWindow("…")`:
    `QueryError::InvalidWindow("…")`."""
    name = type(case).__name__.split("_", 1)[1]
    value = case.value
    shown = _debug_str(value) if isinstance(value, str) else str(value)
    return f"{kind}::{name}({shown})"


def _debug_str(text):
    """Rust's `{:?}` of a string (escapes, not Unicode's finer points)."""
    escapes = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\0": "\\0"}
    out = []
    for char in text:
        if char in escapes:
            out.append(escapes[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{{{ord(char):x}}}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


# --- Configs ------------------------------------------------------------------


def read_config(text, fields, required):
    """The config object of `text` (JSON) as a dict of its fields.

    `fields` maps each allowed field, in declaration order, to a converter
    that returns its value or raises `ConfigError`; `required` names those
    that must be present. Refuses what a Rust adapter's
    `#[serde(deny_unknown_fields)]` struct refuses, in the same order and
    words (serde's position, "at line 1 column N", is left out).
    """
    try:
        value = json.loads(
            text,
            object_pairs_hook=_Object,
            parse_constant=_no_constant,
            parse_float=_finite_float,
        )
    except (ValueError, RecursionError) as e:
        raise ConfigError(f"config: {e}") from None
    if not isinstance(value, _Object):
        raise ConfigError(f"config: invalid type: {_unexpected(value)}, expected struct Config")
    config = {}
    for name, field in value:
        if name not in fields:
            raise ConfigError(f"config: unknown field `{name}`, {_expected_one_of(fields)}")
        if name in config:
            raise ConfigError(f"config: duplicate field `{name}`")
        config[name] = fields[name](field)
    for name in required:
        if name not in config:
            raise ConfigError(f"config: missing field `{name}`")
    return config


def string(value):
    """A JSON string (serde's `String`)."""
    if not isinstance(value, str):
        raise ConfigError(f"config: invalid type: {_unexpected(value)}, expected a string")
    return value


def boolean(value):
    """A JSON boolean (serde's `bool`)."""
    if not isinstance(value, bool):
        raise ConfigError(f"config: invalid type: {_unexpected(value)}, expected a boolean")
    return value


def number(value):
    """A JSON number as a float (serde's `f64`, which takes integers too)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"config: invalid type: {_unexpected(value)}, expected f64")
    try:
        return float(value)
    except OverflowError:
        raise ConfigError("config: number out of range") from None


def map_of(convert):
    """A converter of a JSON object to a dict of its keys to `convert(value)`,
    in document order; a repeated key keeps its last value (serde's `HashMap`)."""

    def convert_map(value):
        if not isinstance(value, _Object):
            raise ConfigError(f"config: invalid type: {_unexpected(value)}, expected a map")
        return {key: convert(item) for key, item in value}

    return convert_map


def check_currency(code):
    """Refuses a currency that is not three ASCII capitals (ISO 4217's form)."""
    if len(code.encode()) != 3 or not all("A" <= c <= "Z" for c in code):
        raise ConfigError(f"config: currency '{code}' is not an ISO 4217 code")


def check_rates(card):
    """Refuses a rate card with a negative (or non-finite) price, or one that
    names a meter twice in different cases (its rate would be a coin toss)."""
    for meter, rate in card.items():
        if not math.isfinite(rate) or rate < 0.0:
            raise ConfigError(
                f"config: the rate of meter '{meter}' must be a non-negative number, "
                f"not {rust_display(rate)}"
            )
    # Sorted by UTF-8 bytes, as Rust sorts strings.
    ids = sorted(card, key=lambda meter: meter.encode())
    for i, a in enumerate(ids):
        for b in ids[i + 1:]:
            if ascii_lower(a) == ascii_lower(b):
                raise ConfigError(
                    f"config: the rate card names meter '{a}' twice ('{a}' and '{b}'; ids ignore case)"
                )


def rate_lookup(card):
    """Meter id (any case) → rate: a dict by lower-case id (the first
    spelling wins when a card names a meter twice in different cases)."""
    lookup = {}
    for meter, rate in card.items():
        lookup.setdefault(ascii_lower(meter), rate)
    return lookup


def _no_constant(name):
    raise ValueError("expected value")


def _finite_float(text):
    value = float(text)
    if math.isinf(value):
        raise ValueError("number out of range")
    return value


def _expected_one_of(fields):
    names = [f"`{name}`" for name in fields]
    if len(names) == 1:
        return f"expected {names[0]}"
    if len(names) == 2:
        return f"expected {names[0]} or {names[1]}"
    return "expected one of " + ", ".join(names)


def _unexpected(value):
    """serde's `Unexpected` wording for a JSON value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean `{'true' if value else 'false'}`"
    if isinstance(value, int):
        return f"integer `{value}`"
    if isinstance(value, float):
        shown = rust_display(value)
        return f"floating point `{shown if '.' in shown else shown + '.0'}`"
    if isinstance(value, str):
        return f"string {_debug_str(value)}"
    if isinstance(value, _Object):
        return "map"
    return "sequence"
