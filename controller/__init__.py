"""The ftpool controller: allocation, routing and recovery for pooled FreqTrade bots."""
