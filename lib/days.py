"""Days: the one home of the n-days-ending-at-D window every job and the report use."""
from __future__ import annotations

import datetime as dt


def window_days(ds: str, n: int) -> list[str]:
    """The n days ending at ``ds`` (inclusive), oldest first, as YYYY-MM-DD."""
    end = dt.date.fromisoformat(ds)
    return [(end - dt.timedelta(days=n - 1 - i)).isoformat() for i in range(n)]
