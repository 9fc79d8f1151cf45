"""List tally's tenant usage API with the unmodified Azure SDK for Python.

Usage: azure_sdk_list.py BASE_URL TOKEN SUBSCRIPTION START END GRANULARITY [SHOW_DETAILS]

Prints one JSON object: the rows seen, the distinct row names, and the total
quantity per meter id, for the Rust test to compare with what it ingested.
When the service refuses the request, prints instead the error the SDK raised
(`{"error": {"type", "status", "code", "message"}}`) and exits with status 2.
"""

import json
import sys
import time
from datetime import datetime

from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError
from azure.mgmt.commerce import UsageManagementClient


class StaticToken:
    """A credential that hands out tally's bearer token."""

    def __init__(self, token):
        self.token = token

    def get_token(self, *scopes, **kwargs):
        return AccessToken(self.token, int(time.time()) + 3600)


def main():
    try:
        listing = list_usage()
    except HttpResponseError as error:
        # What a caller of the SDK gets: its exception type, and the ARM error it decoded.
        refused = {
            "type": type(error).__name__,
            "status": error.status_code,
            "code": error.error.code if error.error else None,
            "message": error.error.message if error.error else str(error),
        }
        print(json.dumps({"error": refused}))
        sys.exit(2)
    print(json.dumps(listing))


def list_usage():
    base_url, token, subscription, start, end, granularity = sys.argv[1:7]
    show_details = (sys.argv[7] if len(sys.argv) > 7 else "true") == "true"
    client = UsageManagementClient(StaticToken(token), subscription, base_url=base_url)
    rows = 0
    names = set()
    totals = {}
    for aggregate in client.usage_aggregates.list(
        datetime.fromisoformat(start),
        datetime.fromisoformat(end),
        show_details=show_details,
        aggregation_granularity=granularity,
        enforce_https=False,
    ):
        rows += 1
        names.add(aggregate.name)
        meter = aggregate.meter_id.lower()
        totals[meter] = totals.get(meter, 0.0) + aggregate.quantity
        if show_details:
            # Clients decode instanceData twice: it is JSON inside a string.
            resources = json.loads(aggregate.instance_data)["Microsoft.Resources"]
            assert resources["resourceUri"], aggregate
        assert aggregate.usage_start_time < aggregate.usage_end_time, aggregate
    return {"rows": rows, "distinct_names": len(names), "totals": totals}


if __name__ == "__main__":
    main()
