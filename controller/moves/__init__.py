"""Moving bots between pools: one move at a time (guard), the transfer every move takes
(hold, stage, relocate, land, release), its one crash recovery, and a lost pool's
evacuation, which moves each of its bots by that transfer (as migration does)."""
