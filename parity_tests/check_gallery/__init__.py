"""Course-style reference networks and deliberately wrong ports, for ``rosetta check``."""
