"""The showback transform, free of the component bindings: usage summed per
calendar month (UTC, of usage time), subscription and meter, rated by a rate
card, as a CSV and as a JSON summary with totals."""

import json
from dataclasses import dataclass

from tally_kit import (
    ascii_lower,
    check_currency,
    check_rates,
    civil_from_days,
    csv_field,
    map_of,
    number,
    rate_lookup,
    read_config,
    rust_display,
    string,
)

HEADER = (
    "month,subscription_id,subscription_name,meter_id,meter_name,category,unit,"
    "quantity,rate,cost,currency\n"
)


class Config:
    """The installation's `[config]` table: `currency`, `rates` and optional
    `subscription_names` (id → display name; the id when absent)."""

    def __init__(self, currency, rates, subscription_names=None):
        self.currency = currency
        self.rates = rates
        self.subscription_names = subscription_names or {}
        self._rates_by_id = rate_lookup(rates)

    @classmethod
    def parse(cls, text):
        """The config of a JSON text, or `ConfigError` saying what is wrong."""
        fields = {
            "currency": string,
            "rates": map_of(number),
            "subscription_names": map_of(string),
        }
        config = cls(**read_config(text, fields, required=["currency", "rates"]))
        check_currency(config.currency)
        check_rates(config.rates)
        return config

    def rate(self, meter_id):
        """The rate of a meter (its id in any case), or `None`."""
        return self._rates_by_id.get(ascii_lower(meter_id))

    def name(self, subscription_id):
        """The display name of a subscription."""
        return self.subscription_names.get(subscription_id, subscription_id)


@dataclass
class Line:
    """One meter of one subscription in one month, rated."""

    month: str
    subscription: str
    subscription_name: str
    meter: str
    meter_name: str
    category: str
    unit: str
    quantity: float
    rate: float
    cost: float


class Showback:
    """Quantities summed per usage month, subscription and meter."""

    def __init__(self):
        # ("YYYY-MM", subscription, meter) → quantity.
        self.quantities = {}
        self.rows_read = 0
        self._months = {}  # day number → "YYYY-MM"

    def add(self, batch):
        """Adds a `usage-batch`: its rows, read column by column."""
        strings = batch.strings
        quantities = self.quantities
        get = quantities.get
        month_of_day = self._months
        for start, subscription, meter, quantity in zip(
            batch.usage_start, batch.subscription_id, batch.meter_id, batch.quantity
        ):
            day = start // 86_400
            month = month_of_day.get(day)
            if month is None:
                year, month_number, _ = civil_from_days(day)
                month = month_of_day[day] = f"{year:04}-{month_number:02}"
            key = (month, strings[subscription], strings[meter])
            quantities[key] = get(key, 0.0) + quantity
        self.rows_read += len(batch.quantity)

    def lines(self, config, catalog):
        """The rated lines, by month, subscription and meter, and the meters
        without a rate (rated at 0), sorted. `catalog` maps lower-case meter
        ids to (name, category, unit)."""
        unrated = set()
        lines = []
        for (month, subscription, meter), quantity in sorted(self.quantities.items()):
            rate = config.rate(meter)
            if rate is None:
                unrated.add(meter)
                rate = 0.0
            name, category, unit = catalog.get(ascii_lower(meter), ("", "", ""))
            lines.append(Line(month, subscription, config.name(subscription), meter,
                              name, category, unit, quantity, rate, quantity * rate))
        return lines, sorted(unrated)


def render_csv(lines, currency):
    """`showback.csv`: one row per line; numbers unrounded, as Rust prints
    them (shortest digits that read back exactly, no exponent)."""
    out = [HEADER]
    for line in lines:
        text = [line.month, line.subscription, line.subscription_name, line.meter,
                line.meter_name, line.category, line.unit]
        numbers = [line.quantity, line.rate, line.cost]
        out.append(
            ",".join([csv_field(t) for t in text] + [rust_display(n) for n in numbers]
                     + [currency]) + "\n"
        )
    return "".join(out)


def render_json(lines, config, request, unrated):
    """`showback.json`: per month, each subscription's cost with its meters,
    and the month's total, in the order of the CSV."""
    months = []
    for line in lines:
        if not months or months[-1]["month"] != line.month:
            months.append({"month": line.month, "cost": 0.0, "subscriptions": []})
        month = months[-1]
        subscriptions = month["subscriptions"]
        if not subscriptions or subscriptions[-1]["subscription_id"] != line.subscription:
            subscriptions.append({
                "subscription_id": line.subscription,
                "name": line.subscription_name,
                "cost": 0.0,
                "meters": [],
            })
        subscription = subscriptions[-1]
        subscription["meters"].append({
            "meter_id": line.meter,
            "meter_name": line.meter_name,
            "category": line.category,
            "unit": line.unit,
            "quantity": line.quantity,
            "rate": line.rate,
            "cost": line.cost,
        })
        subscription["cost"] += line.cost
        month["cost"] += line.cost
    document = {
        "currency": config.currency,
        "window": {"start": iso_time(request.window.start), "end": iso_time(request.window.end)},
        "correction": request.correction,
        "months": months,
        "unrated_meters": unrated,
    }
    return json.dumps(document, ensure_ascii=False, indent=1) + "\n"


def iso_time(timestamp):
    """`YYYY-MM-DDTHH:MM:SSZ` of seconds since the Unix epoch."""
    year, month, day = civil_from_days(timestamp // 86_400)
    seconds = timestamp % 86_400
    return (f"{year:04}-{month:02}-{day:02}T"
            f"{seconds // 3600:02}:{seconds // 60 % 60:02}:{seconds % 60:02}Z")
