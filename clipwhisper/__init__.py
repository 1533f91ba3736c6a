"""clipwhisper: audio-visual speech recognition with Whisper, CLIP and a causal LLM.

    >>> import clipwhisper
    >>> model = clipwhisper.load("runs/tiny/best")
    >>> model.transcribe("clip.mp4")                      # the text
    >>> model.transcribe(audio_16k)                       # a 1-D float numpy array of 16-kHz samples
    >>> model.transcribe(["a.mp4", "b.wav"], segments=True)  # a list: text, duration and timed windows each
"""

__version__ = "0.1.0"


def load(path, device: str = "auto", beam_size: int = 1, precision: str = "auto", cuda_graphs: bool = True):
    """Load a checkpoint folder; the result has ``.transcribe(source, modality=None, segments=False)``."""
    from .inference.transcribe import load as _load

    return _load(path, device=device, beam_size=beam_size, precision=precision, cuda_graphs=cuda_graphs)
