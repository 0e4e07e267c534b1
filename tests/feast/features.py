"""Feast definitions matching the Wafer views of tests/tests/feast.rs.

Two entities: `user` (join key user_id, a string) and `shop` (join key shop, an
int64). Two feature views with the user-activity plugin's features: one keyed by
user, one by the (user, shop) pair. Wafer writes both into Feast's Redis online
store; Feast only reads them. The push sources and their file batch source only
register names and types (Feast needs a source per view).
"""

import os
from datetime import timedelta

from feast import Entity, FeatureView, Field, FileSource, PushSource, ValueType
from feast.types import Float64, Int64, String

DATA = os.environ["WAFER_FEAST_DATA"]

user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING)
shop = Entity(name="shop", join_keys=["shop"], value_type=ValueType.INT64)

batch = FileSource(name="user_events_file", path=DATA, timestamp_field="event_timestamp")
push = PushSource(name="user_activity_push", batch_source=batch)

FEATURES = [
    Field(name="event_count_1h", dtype=Int64),
    Field(name="unique_actions_1h", dtype=Int64),
    Field(name="avg_value_1h", dtype=Float64),
    Field(name="last_action", dtype=String),
]

user_activity = FeatureView(
    name="user_activity",
    entities=[user],
    ttl=timedelta(days=1),
    online=True,
    source=push,
    schema=[Field(name="user_id", dtype=String), *FEATURES],
)

user_shop_activity = FeatureView(
    name="user_shop_activity",
    entities=[user, shop],
    ttl=timedelta(days=1),
    online=True,
    source=push,
    schema=[Field(name="user_id", dtype=String), Field(name="shop", dtype=Int64), *FEATURES],
)

OBJECTS = [user, shop, batch, push, user_activity, user_shop_activity]
