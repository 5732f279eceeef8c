"""Optional Sparkplug B view of the line for SCADA hosts (Ignition, ...): see docs/sparkplug.md."""
