"""Health: the restart policy, what a bot's and the fleet's health is called, and the monitor."""
