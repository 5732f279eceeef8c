"""Reports produced from the database (the shift report)."""
