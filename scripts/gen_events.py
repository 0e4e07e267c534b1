#!/usr/bin/env python3
"""Writes the quickstart's sample events (examples/events.jsonl), deterministically.

Events follow the replaced Python pipeline's format:
{"user_id": str, "action": str, "value": number, "timestamp": ISO-8601 string}.
Most arrive in order, some out of order within the hour, a few more than an
hour late, and a few are malformed, so the demo shows every path.
"""
import json
import random
import sys
from datetime import datetime, timedelta, timezone

def main(path: str, n: int = 3000, seed: int = 7) -> None:
    rng = random.Random(seed)
    start = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)
    actions = ["view", "click", "add_to_cart", "purchase", "search"]
    lines = []
    for i in range(n):
        clock = start + timedelta(seconds=i * 4)
        t = clock
        r = rng.random()
        if r < 0.15:
            t = clock - timedelta(seconds=rng.randint(1, 1800))
        elif r < 0.17:
            t = clock - timedelta(seconds=rng.randint(3700, 5000))
        user = f"user_{int(rng.paretovariate(1.2)) % 40:03d}"
        event = {
            "user_id": user,
            "action": rng.choice(actions),
            "value": round(rng.uniform(1, 200), 2),
            "timestamp": t.strftime("%Y-%m-%dT%H:%M:%S") if i % 3 else t.isoformat(),
        }
        lines.append(json.dumps(event))
        if i % 700 == 350:
            lines.append('{"user_id": "user_001", "action": "view", "value": "NaN?", "timestamp": "2026-03-01T10:00:00"}')
            lines.append("not json at all")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")

if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "examples/events.jsonl")
