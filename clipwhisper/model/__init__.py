"""The audio-visual model: encoders, connectors, fusion and the LLM."""
