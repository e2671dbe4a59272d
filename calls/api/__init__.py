"""Public REST API of calls (F-42): list, detail, timeline, control, outbound, health."""
