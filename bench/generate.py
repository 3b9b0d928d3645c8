"""Deterministic synthetic contact_event JSONL.gz:
`python bench/generate.py N OUT [--start S] [--seed K]`.

Seeded; about 5% duplicate event ids and 0.5% invalid records, varied properties.
`--start` numbers the events from S, so a second file (another seed) holds new
events for an incremental batch."""

from __future__ import annotations

import argparse
import gzip

import numpy as np
import polars as pl

CHUNK = 500_000
BROKEN = b'{"event_id": "broken", "contact_id": '  # an invalid record: the start of one


def chunk_lines(start: int, n: int, rng: np.random.Generator) -> pl.DataFrame:
    idx = np.arange(start, start + n)
    dup = rng.random(n) < 0.05
    event_ids = np.where(dup, np.maximum(idx - rng.integers(1, 1000, n), 0), idx)
    ts = 1_735_689_600 + rng.integers(0, 300 * 86_400, n)
    names = np.array(["login", "page_view", "signup", "invite_sent", "upgrade", "logout"])
    frame = pl.DataFrame(
        {
            "event_id": [f"ev-{i}" for i in event_ids],
            "contact_id": [f"c-{i}" for i in rng.integers(0, max(n // 10, 1), n)],
            "event": names[rng.integers(0, len(names), n)],
            "ts": ts,
            "plan": np.array(["free", "pro", "team"])[rng.integers(0, 3, n)],
            "score": rng.integers(0, 100, n),
        }
    )
    line = pl.concat_str(
        pl.lit('{"event_id":"'),
        "event_id",
        pl.lit('","contact_id":"'),
        "contact_id",
        pl.lit('","event":"'),
        "event",
        pl.lit('","event_timestamp":'),
        pl.col("ts").cast(pl.String),
        pl.lit(',"event_properties":{"plan":"'),
        "plan",
        pl.lit('","score":'),
        pl.col("score").cast(pl.String),
        pl.lit("}}"),
    )
    invalid = pl.Series(rng.random(n) < 0.005)
    return frame.select(line=pl.when(invalid).then(pl.lit(BROKEN.decode())).otherwise(line))


def main(n: int, out: str, first: int = 0, seed: int = 42) -> None:
    rng = np.random.default_rng(seed)
    with gzip.open(out, "wb", compresslevel=1) as fh:
        for start in range(first, first + n, CHUNK):
            lines = chunk_lines(start, min(CHUNK, first + n - start), rng)
            fh.write(("\n".join(lines["line"].to_list()) + "\n").encode())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("n", type=int)
    parser.add_argument("out")
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    main(args.n, args.out, args.start, args.seed)
