#!/usr/bin/env python3
"""Produces user-events in the replaced Python pipeline's format, for docker-compose.yml.

Each record is keyed by user_id (so one user's events share a partition) and
valued {"user_id": str, "action": str, "value": number, "timestamp": ISO-8601}.
Event times follow the wall clock; about 5 % arrive out of order within the
hour and about 0.5 % more than an hour late, so every path of Wafer is used.

    python3 event_generator.py --brokers kafka:9092 --topic user-events --rate 50
    python3 event_generator.py --dry-run --count 10      # print JSON lines, no Kafka
"""
import argparse
import json
import random
import sys
import time
from datetime import datetime, timedelta, timezone

ACTIONS = ["view", "click", "add_to_cart", "purchase", "search"]


def event(rng: random.Random, users: int, now: datetime) -> dict:
    t = now
    r = rng.random()
    if r < 0.05:
        t = now - timedelta(seconds=rng.randint(1, 1800))
    elif r < 0.055:
        t = now - timedelta(seconds=rng.randint(3700, 5000))
    return {
        "user_id": f"user_{rng.randrange(users):03d}",
        "action": rng.choice(ACTIONS),
        "value": round(rng.uniform(1, 200), 2),
        "timestamp": t.isoformat(timespec="milliseconds"),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--brokers", default="kafka:9092")
    ap.add_argument("--topic", default="user-events")
    ap.add_argument("--rate", type=float, default=50.0, help="events per second")
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--count", type=int, default=0, help="stop after this many (0 = never)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--dry-run", action="store_true", help="print JSON lines instead of producing")
    args = ap.parse_args()
    rng = random.Random(args.seed)

    producer = None
    if not args.dry_run:
        from confluent_kafka import Producer  # only needed when producing

        producer = Producer({"bootstrap.servers": args.brokers, "linger.ms": 20})
    sent = 0
    while args.count == 0 or sent < args.count:
        e = event(rng, args.users, datetime.now(timezone.utc))
        payload = json.dumps(e)
        if producer is None:
            print(payload)
        else:
            producer.produce(args.topic, key=e["user_id"], value=payload)
            producer.poll(0)
            if args.rate > 0:
                time.sleep(1.0 / args.rate)
        sent += 1
    if producer is not None:
        producer.flush(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
