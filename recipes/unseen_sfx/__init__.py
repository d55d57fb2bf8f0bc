"""Real game sounds from other free games' Debian packages, reserved as an evaluation reference."""
