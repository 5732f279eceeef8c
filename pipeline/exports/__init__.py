"""Export formats of audit data (signed JSON Lines)."""
