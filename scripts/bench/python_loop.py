#!/usr/bin/env python3
"""The Python loop that Wafer replaces, written for the benchmark (issue 6) as issue 2
describes it, so Wafer can be compared with it on the same broker, Redis and events.

Per event, it:
  - consumes one record from the input topic (confluent-kafka consumer group, auto-commit);
  - decodes the JSON event and appends it to the user's list, kept in memory forever;
  - recomputes the user's 1 h features from that whole list, the hour measured on the
    wall clock: event_count_1h, unique_actions_1h, avg_value_1h (sum / count, 0.0 when
    empty), last_action (None when empty), computed_at (wall clock);
  - SETEX features:{user_id} 3600 <json> in Redis (one round trip);
  - produces the same JSON to the output topic, key = user_id.

The benchmark adds only what it needs to run it bounded and side by side with Wafer:
its own topic, group and key template, a maximum number of events and a time cap,
and a JSON report on stdout: events consumed, seconds from start to the last write
acknowledged, seconds from the first to the last event.

  python_loop.py --brokers 127.0.0.1:9092 --topic T --group G --output-topic O \
      --redis-url redis://127.0.0.1:6379 --key-template 'p:features:{user_id}' \
      --max-events 50000 --max-seconds 90
  python_loop.py --versions
"""

import argparse
import json
import sys
import time
import warnings
from collections import defaultdict
from datetime import datetime, timedelta, timezone

import confluent_kafka
import redis
from confluent_kafka import Consumer, Producer

# redis-py 8 flags SETEX as deprecated in favour of SET ... EX; the loop uses SETEX.
warnings.filterwarnings("ignore", category=DeprecationWarning)


def versions():
    return {
        "python": sys.version.split()[0],
        "confluent_kafka": getattr(confluent_kafka, "__version__", None) or str(confluent_kafka.version()),
        "librdkafka": confluent_kafka.libversion()[0],
        "redis_py": redis.__version__,
    }


def parse_time(text):
    ts = datetime.fromisoformat(text)
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=timezone.utc)
    return ts


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--brokers", default="127.0.0.1:9092")
    ap.add_argument("--topic", default="user-events")
    ap.add_argument("--group", default="feature-pipeline")
    ap.add_argument("--output-topic", default="ml-features")
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379")
    ap.add_argument("--key-template", default="features:{user_id}")
    ap.add_argument("--max-events", type=int, default=0, help="stop after this many events (0: no limit)")
    ap.add_argument("--max-seconds", type=float, default=90.0, help="stop after this long in any case")
    ap.add_argument("--versions", action="store_true", help="print library versions as JSON and exit")
    args = ap.parse_args()
    if args.versions:
        print(json.dumps(versions()))
        return

    started = time.monotonic()
    cpu_started = time.process_time()
    deadline = started + args.max_seconds
    consumer = Consumer(
        {
            "bootstrap.servers": args.brokers,
            "group.id": args.group,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([args.topic])
    producer = Producer({"bootstrap.servers": args.brokers})
    r = redis.Redis.from_url(args.redis_url)

    user_events = defaultdict(list)
    consumed = 0
    first = last = None
    while time.monotonic() < deadline:
        if args.max_events and consumed >= args.max_events:
            break
        msg = consumer.poll(1.0)
        if msg is None:
            continue
        if msg.error():
            print(f"consumer error: {msg.error()}", file=sys.stderr)
            continue
        if first is None:
            first = time.monotonic()
        consumed += 1
        try:
            event = json.loads(msg.value())
            user_id = event["user_id"]
            user_events[user_id].append(
                {
                    "action": event["action"],
                    "value": float(event["value"]),
                    "ts": parse_time(event["timestamp"]),
                }
            )
        except (ValueError, KeyError, TypeError) as e:
            print(f"skipping bad event: {e}", file=sys.stderr)
            continue

        now = datetime.now(timezone.utc)
        cutoff = now - timedelta(hours=1)
        recent = [e for e in user_events[user_id] if e["ts"] > cutoff]
        count = len(recent)
        features = {
            "user_id": user_id,
            "event_count_1h": count,
            "unique_actions_1h": len({e["action"] for e in recent}),
            "avg_value_1h": sum(e["value"] for e in recent) / count if count else 0.0,
            "last_action": recent[-1]["action"] if recent else None,
            "computed_at": now.isoformat(),
        }
        payload = json.dumps(features)
        r.setex(args.key_template.replace("{user_id}", user_id), 3600, payload)
        producer.produce(args.output_topic, key=user_id, value=payload)
        producer.poll(0)
        last = time.monotonic()

    producer.flush(30)
    ended = time.monotonic()
    consumer.close()
    report = {
        "events": consumed,
        "seconds": ended - started,
        "first_to_last_seconds": (last - first) if first is not None and last is not None else 0.0,
        "capped": bool(args.max_events) and consumed < args.max_events,
        "users": len(user_events),
        "process_cpu_seconds": time.process_time() - cpu_started,
    }
    report.update(versions())
    print(json.dumps(report))


if __name__ == "__main__":
    main()
