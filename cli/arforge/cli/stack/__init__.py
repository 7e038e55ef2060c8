"""The embedded stack: every ARForge process on one machine, supervised by ``arforge up``."""
