"""Optional integrations with other tools (each needs its own extra; importing this package needs none)."""
