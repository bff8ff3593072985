"""A pool's market-data proxy: its bots' public exchange requests coalesced and cached, one
request-weight budget per upstream, private requests passed through untouched.

`python -m agent.marketdata` runs it (the agent renders it as a supervisord program);
`routing.route_config` points a bot's ccxt URLs at it. docs/market-data.md explains both.
"""
