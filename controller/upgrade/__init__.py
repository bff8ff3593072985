"""Rolling upgrades of the pool image: each selected pool's container is recreated from
the new image on the same bot directories, its bots verified through their API, and a
pool that does not come back healthy is rolled back to its old image (docs/operations.md)."""
