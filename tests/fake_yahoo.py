"""A stand-in for `yfinance.download`, the network edge and the only thing tests replace.

It serves fixed histories the way yfinance 1.7 does (`auto_adjust=False`,
`multi_level_index=False`: a DatetimeIndex and `Adj Close, Close, High, Low, Open, Volume`),
honours start and the exclusive end, and fails on demand: raising like a patched network call,
or returning an empty frame after logging the reason, which is what the real one does.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import pandas as pd

from tests.synthetic import make_prices

YF_COLUMNS = ["Adj Close", "Close", "High", "Low", "Open", "Volume"]
OFFLINE = "offline"  # script entry: log a curl DNS error and return an empty frame, like yfinance
DNS_ERROR = "DNSError('Failed to perform, curl: (6) Could not resolve host')"
NOISE = "The inplace keyword in DataFrame.rename is deprecated (Pandas4Warning)"
UNKNOWN = "YFPricesMissingError('possibly delisted; no price data found')"


def yahoo_frame(n: int = 30, seed: int = 0, start: str = "2020-01-01") -> pd.DataFrame:
    """make_prices bars as yf.download returns them."""
    frame = make_prices(n, seed, start).set_index("Date")
    frame.index = pd.DatetimeIndex(pd.to_datetime(frame.index), name="Date")
    return frame[YF_COLUMNS]


class FakeYahoo:
    """`download` serves `history[ticker]`; entries of `script` are consumed first, one per call."""

    def __init__(
        self,
        history: dict[str, pd.DataFrame],
        script: list[Any] | None = None,
        offline: tuple[str, ...] = (),
    ):
        self.history = history
        self.script = list(script or [])
        self.offline = offline  # tickers whose every call fails like a network outage
        self.calls: list[dict[str, Any]] = []

    def download(self, tickers: str, **kwargs: Any) -> pd.DataFrame:
        self.calls.append({"ticker": tickers, **kwargs})
        warnings.warn(NOISE, DeprecationWarning, stacklevel=2)  # yfinance 1.7 on pandas 3 does
        if self.script:
            outcome = self.script.pop(0)
            if isinstance(outcome, BaseException):
                raise outcome
            if outcome == OFFLINE:
                return _failed(tickers, DNS_ERROR)
        if tickers in self.offline:
            return _failed(tickers, DNS_ERROR)
        if tickers not in self.history:
            return _failed(tickers, UNKNOWN)
        frame = self.history[tickers]
        if kwargs.get("start"):
            frame = frame.loc[frame.index >= pd.Timestamp(kwargs["start"])]
        if kwargs.get("end"):
            frame = frame.loc[frame.index < pd.Timestamp(kwargs["end"])]  # exclusive, like Yahoo
        return frame.copy()

    def starts(self) -> list[str | None]:
        return [call.get("start") for call in self.calls]


def _failed(ticker: str, reason: str) -> pd.DataFrame:
    logging.getLogger("yfinance").error("\n1 Failed download:")
    logging.getLogger("yfinance").error("['%s']: %s", ticker, reason)
    return pd.DataFrame(columns=YF_COLUMNS)


def install(
    tickers: dict[str, int], offline: tuple[str, ...] = (), script: list[Any] | None = None
) -> FakeYahoo:
    """Patch yfinance.download for a CLI subprocess: `tickers` maps a ticker to its bar count;
    `script` as in FakeYahoo (failures served first, one per call)."""
    import yfinance

    history = {t: yahoo_frame(n, seed=i) for i, (t, n) in enumerate(tickers.items())}
    fake = FakeYahoo(history, script, offline=offline)
    yfinance.download = fake.download
    return fake
