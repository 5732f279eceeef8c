"""Device drivers: one subpackage per device family (driver, protocol pieces, simulator), see `port`."""
