"""`edgeline doctor`: checks of configuration, reachability and credentials, each a small function."""
