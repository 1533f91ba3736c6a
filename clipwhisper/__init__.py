"""clipwhisper: audio-visual speech recognition with Whisper, CLIP and a causal LLM.

    >>> import clipwhisper
    >>> model = clipwhisper.load("runs/tiny/best")
    >>> model.transcribe("clip.mp4")
"""

__version__ = "0.1.0"


def load(path, device: str = "auto", beam_size: int = 1):
    """Load a checkpoint folder; the result has ``.transcribe(path_or_media)``."""
    from .inference.transcribe import load as _load

    return _load(path, device=device, beam_size=beam_size)
