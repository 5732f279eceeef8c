"""The station runtime: process, agent, port workers, supervisor and hot-plug, spool, operator view."""
