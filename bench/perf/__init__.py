"""Performance: the latency engine, its statistics, memory budget, host facts, roofline and
reports."""
