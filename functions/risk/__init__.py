"""Risk controls: the community's limits on credited services (enforced as conditional
counters inside the settlement's own transaction) and flags for patterns that are not refused
but reviewed by admins (repeated pairs, rapid back-and-forth between two households)."""
