"""JSON Schemas of the published events (data files; a package so that wheels ship them)."""
