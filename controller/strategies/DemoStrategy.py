"""A strategy that trades quickly, for the offline demo and the tests (the exchange emulator).

It trades noise: it buys when the last closed 1m candle rose, and sells on a tiny ROI or when
the price fell two candles in a row, so dry-run bots open trades within seconds of starting
and close them within a few minutes, about half at a small profit. After fees it loses money
on average: it has no edge at all. Never use it with money.
"""

from freqtrade.strategy import IStrategy
from pandas import DataFrame


class DemoStrategy(IStrategy):
    INTERFACE_VERSION = 3
    timeframe = "1m"
    can_short = False
    # 0.2 % at once, 0.1 % after 2 minutes, break-even (after fees) after 5.
    minimal_roi = {"0": 0.002, "2": 0.001, "5": 0.0}
    stoploss = -0.02
    use_exit_signal = True
    exit_profit_only = False
    process_only_new_candles = True
    startup_candle_count = 3

    def populate_indicators(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        close = dataframe["close"]
        dataframe["rose"] = (close > dataframe["open"]) & (close > close.shift(1))
        dataframe["fell_twice"] = (close < close.shift(1)) & (close.shift(1) < close.shift(2))
        return dataframe

    def populate_entry_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        dataframe.loc[dataframe["rose"] & (dataframe["volume"] > 0), "enter_long"] = 1
        return dataframe

    def populate_exit_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        dataframe.loc[dataframe["fell_twice"], "exit_long"] = 1
        return dataframe
