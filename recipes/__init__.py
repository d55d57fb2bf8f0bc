"""End-to-end recipes: prepare scripts, their shared dataset writer and experiment notes."""
