"""Moving bots between pools: one move at a time (guard), a lost pool's evacuation, and
the transfer of one held bot (hold, stage, relocate, land, release) that migration uses."""
