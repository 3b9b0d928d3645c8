"""What one sensor tick lists. A folder is walked whole every tick. On S3, where
listing 100k objects takes many seconds, a tick lists (1) today's and yesterday's
date prefixes (`<folder>/YYYY/MM/DD/`, where the API writes), and (2) the next slice
of a full sweep of every folder, resumed from a high-water key kept in the sensor
cursor, at most `keys_per_tick` keys. A sweep starts every `full_listing_seconds`,
so a file landed under any other name is seen within that time plus one sweep."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

from .base import LandedFile, LandingStore


@dataclass
class SweepState:
    """The listing part of the sensor cursor (JSON)."""

    started_at: float = 0.0  # when the current or last full sweep began (unix time)
    folder: int | None = None  # index of the folder being swept; None = no sweep under way
    after: str | None = None  # high-water mark: the last path listed in that folder

    @classmethod
    def from_json(cls, data: dict | None) -> SweepState:
        return cls(**data) if data else cls()

    def to_json(self) -> dict:
        return asdict(self)


def list_for_tick(
    store: LandingStore,
    folders: list[str],
    state: SweepState,
    now: float,
    *,
    keys_per_tick: int,
    full_listing_seconds: float,
) -> tuple[list[LandedFile], SweepState]:
    if not store.incremental_listing:
        return [f for folder in folders for f in store.list_files(folder)], state
    today = datetime.fromtimestamp(now, UTC).date()
    files = {
        f.file_id: f
        for day in (today - timedelta(days=1), today)  # a URL made before midnight, confirmed after
        for folder in folders
        for f in store.list_files(f"{folder}/{day:%Y/%m/%d}")
    }
    state = SweepState(**state.to_json())
    if state.folder is None and now - state.started_at >= full_listing_seconds:
        state = SweepState(started_at=now, folder=0)
    budget = keys_per_tick
    while state.folder is not None and budget > 0:
        page, last, listed = store.list_page(folders[state.folder], state.after, min(1000, budget))
        budget -= max(1, listed)  # keys listed, hidden names too: they cost the same
        files.update((f.file_id, f) for f in page)
        if last is None:  # this folder is done
            state.folder = state.folder + 1 if state.folder + 1 < len(folders) else None
            state.after = None
        else:
            state.after = last
    return list(files.values()), state
