"""{{name}}: a tally billing adapter. It sums the usage of each meter over
the export window, prices it with an optional rate card and writes
`summary.csv`.

Config (the installation's `[config]` table, handed over as JSON):

    currency = "EUR"
    [rates]                      # price per unit; meters without one cost 0
    "FAB6EB84-500B-4A09-A8CA-7358F8BBAEA5" = 0.025

The contract is `wit/billing-adapter.wit`: start there. componentize-py
generates the `wit_world` module from it at build time.
"""

import json
import math

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports.adapter import (
    Description,
    ExportError_InvalidConfig,
    ExportError_Permanent,
    ExportError_Transient,
    Summary,
)
from wit_world.imports import log, output, usage

DOCUMENT = "summary.csv"


def parse_config(text):
    """Parses and checks a configuration; raises ValueError saying what to fix."""
    try:
        config = json.loads(text)
    except ValueError as e:
        raise ValueError(f"config: {e}")
    if not isinstance(config, dict):
        raise ValueError("config: expected a table")
    unknown = set(config) - {"currency", "rates"}
    if unknown:
        raise ValueError(f"config: unknown field(s) {', '.join(sorted(unknown))}")
    currency = config.get("currency")
    if not (isinstance(currency, str) and len(currency) == 3 and currency.isascii() and currency.isupper()):
        raise ValueError(f"config: currency '{currency}' is not an ISO 4217 code")
    rates = {}
    for meter, rate in config.get("rates", {}).items():
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not math.isfinite(rate) or rate < 0:
            raise ValueError(f"config: the rate of '{meter}' must be a non-negative number, not {rate}")
        rates[meter.lower()] = float(rate)  # meter ids compare ignoring case
    return currency, rates


def csv_field(text):
    """A CSV field, quoted when it holds a comma, a quote or a line break."""
    if any(c in text for c in ',"\n\r'):
        return '"' + text.replace('"', '""') + '"'
    return text


class Adapter(exports.Adapter):
    """The `adapter` interface of the `billing-adapter` world."""

    def describe(self):
        return Description(name="{{name}}", version="0.1.0", produces=[DOCUMENT])

    def validate_config(self, config):
        try:
            parse_config(config)
        except ValueError as e:
            raise Err(str(e))

    def export(self, request, config):
        try:
            currency, rates = parse_config(config)
        except ValueError as e:
            raise Err(ExportError_InvalidConfig(str(e)))
        try:
            cursor = usage.query(request.window, request.granularity, None)
        except Err as e:
            raise Err(ExportError_Transient(f"query refused: {e.value}"))
        # Usage arrives in column batches; strings are indexes into `batch.strings`.
        quantities = {}
        rows_read = 0
        with cursor:
            while (batch := cursor.next()) is not None:
                for meter, quantity in zip(batch.meter_id, batch.quantity):
                    meter = batch.strings[meter]  # in the catalog's spelling
                    quantities[meter] = quantities.get(meter, 0.0) + quantity
                rows_read += len(batch.quantity)
        catalog = {m.id: (m.name, m.unit) for m in usage.meters()}
        lines = ["meter_id,meter_name,unit,quantity,rate,cost,currency"]
        for meter in sorted(quantities):
            name, unit = catalog.get(meter, ("", ""))
            rate = rates.get(meter.lower(), 0.0)
            quantity = quantities[meter]
            lines.append(
                f"{meter},{csv_field(name)},{csv_field(unit)},{quantity:.6f},{rate},{quantity * rate:.6f},{currency}"
            )
        try:
            output.append(DOCUMENT, "text/csv", ("\n".join(lines) + "\n").encode())
        except Err as e:
            raise Err(ExportError_Permanent(f"writing {DOCUMENT}: {e.value}"))
        log.write(log.Level.INFO, f"{rows_read} usage rows summed into {len(quantities)} meters")
        return Summary(rows_read=rows_read, rows_written=len(quantities), documents=[DOCUMENT])
