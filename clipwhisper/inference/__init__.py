"""Decoding, transcription and checkpoint inspection."""
