"""``make simulate``: ten months of a community through the real handlers (sim/README.md)."""
from sim.cli import main

raise SystemExit(main())
