"""The product catalogue: an ordinary in-memory table (the tasks do not read
it), made the same in every worker."""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any

WORDS = ("red", "blue", "green", "steel", "oak", "linen", "compact", "deluxe", "travel",
         "garden", "kitchen", "office", "lamp", "chair", "table", "kettle", "mug", "bag",
         "shelf", "clock", "rug", "pillow", "vase", "frame", "bench")
TAGS = ("home", "outdoor", "sale", "new", "eco", "gift", "premium", "basic")


def make(n: int = 5000, seed: int = 1) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [{"id": i, "name": " ".join(rng.choice(WORDS) for _ in range(3)),
             "price": round(rng.uniform(1, 500), 2), "stock": rng.randrange(0, 200),
             "tags": rng.sample(TAGS, rng.randrange(1, 4))} for i in range(n)]


def search(items: list[dict[str, Any]], q: str, limit: int) -> list[dict[str, Any]]:
    q = q.lower()
    found = [it for it in items if q in it["name"]]
    found.sort(key=lambda it: (it["price"], it["id"]))
    return found[:limit]


def report(items: list[dict[str, Any]]) -> dict[str, Any]:
    """The CPU-heavier handler: per-tag statistics over the whole catalogue."""
    prices: dict[str, list[float]] = defaultdict(list)
    stock: dict[str, int] = defaultdict(int)
    for it in items:
        for tag in it["tags"]:
            prices[tag].append(it["price"])
            stock[tag] += it["stock"]
    out = {}
    for tag, values in sorted(prices.items()):
        values.sort()
        out[tag] = {"items": len(values), "stock": stock[tag],
                    "median_price": values[len(values) // 2],
                    "mean_price": round(sum(values) / len(values), 2)}
    return out
