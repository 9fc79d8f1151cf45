"""The chargeback transform, free of the component bindings: a line-by-line
mirror of `adapters/chargeback-csv/src/rating.rs`, so that both adapters
write the same bytes for the same usage and config.

What keeps them byte-identical:
- rows are keyed by (usage day, group, subscription, meter) as strings, and
  each key's quantity is summed in the order the rows arrive (`0.0 + q1 +
  q2 …`, as Rust's `or_default() += q`);
- rows are sorted by that key; Python compares strings by code point, which
  is Rust's byte order of their UTF-8;
- numbers are printed with `{:.6f}`, which rounds the exact binary value
  half to even, as Rust's `{:.6}` does (`0.0078125` → `0.007812`, `-0.0` →
  `-0.000000`);
- meter ids compare ignoring ASCII case only, as `eq_ignore_ascii_case`.
"""

from tally_kit import (
    RUST_WHITESPACE,
    ConfigError,
    ascii_lower,
    boolean,
    check_currency,
    check_rates,
    civil_from_days,
    csv_field,
    map_of,
    number,
    rate_lookup,
    read_config,
    string,
)

HEADER = "date,group,subscription_id,meter_id,meter_name,unit,quantity,rate,cost,currency\n"
UNALLOCATED = "unallocated"


class Config:
    """The installation's `[config]` table: `currency`, `group_by_tag`,
    `rates` and, optionally, `per_subscription`."""

    def __init__(self, currency, group_by_tag, rates, per_subscription=False):
        self.currency = currency
        self.group_by_tag = group_by_tag
        self.rates = rates
        self.per_subscription = per_subscription
        self._rates_by_id = rate_lookup(rates)

    @classmethod
    def parse(cls, text):
        """The config of a JSON text, or `ConfigError` with the Rust adapter's reason."""
        fields = {
            "currency": string,
            "group_by_tag": string,
            "rates": map_of(number),
            "per_subscription": boolean,
        }
        required = ("currency", "group_by_tag", "rates")
        config = cls(**read_config(text, fields, required=required))
        check_currency(config.currency)
        if not config.group_by_tag.strip(RUST_WHITESPACE):
            raise ConfigError("config: group_by_tag must not be empty")
        check_rates(config.rates)
        return config

    def rate(self, meter_id):
        """The rate of a meter (its id in any case), or `None`."""
        return self._rates_by_id.get(ascii_lower(meter_id))


class Chargeback:
    """Quantities summed per usage day, group, subscription and meter."""

    def __init__(self, group_by_tag):
        self.group_by_tag = group_by_tag
        # (usage day, group, subscription, meter) → quantity.
        self.quantities = {}
        self.rows_read = 0

    def add(self, batch):
        """Adds a `usage-batch`: its rows, read column by column."""
        strings = batch.strings
        tag = self.group_by_tag
        # The group of each tag set: the value of its first `group_by_tag` pair.
        groups = [
            next((strings[v] for k, v in pairs if strings[k] == tag), UNALLOCATED)
            for pairs in batch.tag_sets
        ]
        quantities = self.quantities
        get = quantities.get
        for start, group, subscription, meter, quantity in zip(
            batch.usage_start, batch.tags, batch.subscription_id, batch.meter_id, batch.quantity
        ):
            key = (start // 86_400, groups[group], strings[subscription], strings[meter])
            quantities[key] = get(key, 0.0) + quantity
        self.rows_read += len(batch.quantity)

    def rows(self):
        """Output rows so far."""
        return len(self.quantities)

    def render(self, config, catalog):
        """The CSV, rows ordered by day, group, subscription and meter, and
        the meters that had no rate (exported at 0), sorted. `catalog` maps
        lower-case meter ids to (name, unit)."""
        unrated = set()
        lines = [HEADER]
        for key, quantity in sorted(self.quantities.items()):
            if config.rate(key[3]) is None:
                unrated.add(key[3])
            lines.append(_row(config, catalog, key, quantity))
        return "".join(lines), sorted(unrated)

    def render_per_subscription(self, config, catalog):
        """Each subscription's own CSV, as `(subscription, csv)` in the order
        of the ids (by code point, Rust's byte order): the header, then that
        subscription's rows of `render`, in the same order."""
        rows = sorted(self.quantities.items())
        # Stable: each subscription's rows keep the order of the whole CSV.
        rows.sort(key=lambda row: row[0][2])
        documents = []
        for key, quantity in rows:
            if not documents or documents[-1][0] != key[2]:
                documents.append((key[2], [HEADER]))
            documents[-1][1].append(_row(config, catalog, key, quantity))
        return [(subscription, "".join(lines)) for subscription, lines in documents]


def _row(config, catalog, key, quantity):
    """One output row (a meter without a rate is rated at 0)."""
    day, group, subscription, meter = key
    rate = config.rate(meter)
    if rate is None:
        rate = 0.0
    meter_name, unit = catalog.get(ascii_lower(meter), ("", ""))
    return (
        f"{iso_date(day)},{csv_field(group)},{csv_field(subscription)},"
        f"{csv_field(meter)},{csv_field(meter_name)},{csv_field(unit)},"
        f"{quantity:.6f},{rate:.6f},{quantity * rate:.6f},{config.currency}\n"
    )


def iso_date(days):
    """`YYYY-MM-DD` of a day number since the Unix epoch."""
    year, month, day = civil_from_days(days)
    return f"{year:04}-{month:02}-{day:02}"
