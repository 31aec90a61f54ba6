"""Fair value, the options quoter, the toxicity detector and the delta hedger."""
