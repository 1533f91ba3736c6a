"""clipwhisper: audio-visual speech recognition with Whisper, CLIP and a causal LLM."""

__version__ = "0.1.0"
