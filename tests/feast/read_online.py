"""Reads Wafer's writes back through Feast's own SDK.

Usage: read_online.py <repo dir> < requests.json

The repo dir holds the test's feature_store.yaml. The definitions of features.py
(beside this script) are applied to it, then each request of the JSON list on stdin,
{"feature_view": ..., "features": [...], "entity_rows": [{join key: value}, ...]},
is answered with FeatureStore.get_online_features. Prints a JSON list, one object per
request: {"values": to_dict(), "event_ms": {feature: [event time in ms or null]}}.
"""

import json
import os
import sys

import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from feast import FeatureStore  # noqa: E402

import features as defs  # noqa: E402

repo = sys.argv[1]
if not os.path.exists(defs.DATA):
    # The batch source only needs to exist: one row with every column.
    pd.DataFrame(
        {
            "user_id": ["none"],
            "shop": [0],
            "event_count_1h": [0],
            "unique_actions_1h": [0],
            "avg_value_1h": [0.0],
            "last_action": [""],
            "event_timestamp": [pd.Timestamp("2026-01-01", tz="UTC")],
        }
    ).to_parquet(defs.DATA)

store = FeatureStore(repo_path=repo)
store.apply(defs.OBJECTS)

out = []
for request in json.load(sys.stdin):
    view = request["feature_view"]
    response = store.get_online_features(
        features=[f"{view}:{f}" for f in request["features"]],
        entity_rows=request["entity_rows"],
    )
    names = list(response.proto.metadata.feature_names.val)
    event_ms = {}
    for name, vector in zip(names, response.proto.results):
        event_ms[name] = [
            ts.seconds * 1000 + ts.nanos // 1_000_000 if ts.seconds or ts.nanos else None
            for ts in vector.event_timestamps
        ]
    out.append({"values": response.to_dict(), "event_ms": event_ms})
print(json.dumps(out))
