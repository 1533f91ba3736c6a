"""Transcribe files or arrays with a checkpoint; long inputs are split into overlapping windows."""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import typer
from rich.markup import escape

from ..data.dataset import collate
from ..data.media import SAMPLE_RATE, VIDEO_FPS, load_audio, load_video
from ..errors import EXIT_RUNTIME, ClipWhisperError, MediaError
from ..modality import STREAMS, Modality, modality_of
from ..model.avsr import AVSRModel
from ..runtime.report import status

WINDOW_S = 30.0
OVERLAP_S = 2.0
WINDOW_BATCH = 8  # windows generated at once: memory is that of 8 windows, whatever the file's length


@dataclass
class Media:
    audio: np.ndarray | None = None  # float32, 16 kHz
    video: np.ndarray | None = None  # (T, H, W, 3) uint8, 25 fps

    @property
    def modality(self) -> Modality:
        return modality_of(self.streams)

    @property
    def streams(self) -> tuple[str, ...]:
        return tuple(name for name in STREAMS if getattr(self, name) is not None)

    @property
    def duration_s(self) -> float:
        if self.audio is not None:
            return len(self.audio) / SAMPLE_RATE
        return len(self.video) / VIDEO_FPS

    def cut(self, start: float, end: float) -> Media:
        """The part from ``start`` to ``end`` seconds (views, no copies); a video part has at least a frame, and
        a part that reaches the end (by the audio's clock) keeps every frame after it, as a file's last window
        read from disk does."""
        first = int(start * VIDEO_FPS)
        last = None if end >= self.duration_s else max(first + 1, int(end * VIDEO_FPS))
        return Media(audio=None if self.audio is None else self.audio[int(start * SAMPLE_RATE):int(end * SAMPLE_RATE)],
                     video=None if self.video is None else self.video[first:last])


Source = str | Path | np.ndarray | Media


def windows(duration_s: float, window_s: float = WINDOW_S, overlap_s: float = OVERLAP_S) -> list[tuple[float, float]]:
    """Overlapping ``(start, end)`` spans covering ``duration_s``, each ``window_s`` long but the last, which
    ends at the end: the spans ``Transcriber.read_windows`` reads from a file of that length."""
    spans, start = [], 0.0
    while start + window_s < duration_s:
        spans.append((start, start + window_s))
        start += window_s - overlap_s
    return [*spans, (start, duration_s)]


def join_overlapping(texts: list[str]) -> str:
    """Join window transcripts, dropping the words that the overlap repeated."""
    words: list[str] = []
    for text in texts:
        new = text.split()
        overlap = 0
        for size in range(min(len(words), len(new)), 0, -1):
            if words[-size:] == new[:size]:
                overlap = size
                break
        words += new[overlap:]
    return " ".join(words)


class Transcriber:
    """``clipwhisper.load(path)`` returns one: ``.transcribe(file, array, Media or a list of them)``."""

    def __init__(self, model: AVSRModel, beam_size: int = 1, max_new_tokens: int = 128):
        self.model = model
        self.beam_size = beam_size
        self.max_new_tokens = max_new_tokens

    @property
    def window_s(self) -> float:
        if self.model.audio_encoder is not None:
            return min(WINDOW_S, self.model.audio_encoder.max_samples / SAMPLE_RATE)
        return WINDOW_S

    def read(self, path: Path, cropping=None, span: tuple[float, float] | None = None,
             streams: tuple[str, ...] | None = None) -> tuple[Media, str]:
        """The streams of ``path`` that the model uses (or ``streams`` of them), within ``span`` (``(start_s,
        length_s)``) if given, and the modality they make; with ``cropping`` (a prepare.run.Cropping) the video
        is a raw recording, cropped first as ``clipwhisper prepare`` does."""
        path = Path(path)
        if cropping is not None:
            return self._read_cropped(path, cropping)
        streams = streams or self.model.streams
        media = Media()
        if "video" in streams:
            try:
                media.video = load_video(path, self.model.video_encoder.image_size, span=span)
            except MediaError as exc:
                if "no video stream" not in str(exc) or streams == ("video",):
                    raise
        if "audio" in streams:
            try:
                media.audio = load_audio(path, span=span)
            except MediaError as exc:
                if "no audio stream" not in str(exc) or media.video is None:
                    raise
        return media, media.modality

    def read_windows(self, path: Path) -> Iterator[Media]:
        """``path`` window by window, each read from the file on its own: memory holds one window, however
        long the file. The last window is the one that reaches the end."""
        hop, span, streams = self.window_s - OVERLAP_S, (0.0, self.window_s), None
        while True:
            media = self.read(path, span=span, streams=streams)[0]
            streams = streams or media.streams  # what the first window found: no search for a missing stream
            if span[0] and media.duration_s <= 0:
                return
            yield media
            if media.duration_s < self.window_s - 1 / VIDEO_FPS:
                return
            span = (span[0] + hop, self.window_s)

    def _read_cropped(self, path: Path, cropping) -> tuple[Media, str]:
        from ..prepare.run import Options, lost_text, prepare_one

        with tempfile.TemporaryDirectory() as folder:
            record = prepare_one("clip", path, Options(Path(folder), cropping))
            if record["crops"][0]["lost_frames"]:
                status.print(f"[yellow]{escape(str(path))}: {lost_text(record['crops'][0]['lost_frames'])}: those "
                             "frames' crops are black[/yellow]", soft_wrap=True)
            media = Media(audio=load_audio(record["audio"]) if "audio" in self.model.streams else None,
                          video=load_video(record["crops"][0]["video"], self.model.video_encoder.image_size)
                          if "video" in self.model.streams else None)
        return media, media.modality

    def _generate(self, pieces: list[Media], modality: str | None) -> list[str]:
        items = [{"id": f"w{index}", "text": "", **({"audio": piece.audio} if piece.audio is not None else {}),
                  **({"video": piece.video} if piece.video is not None else {})} for index, piece in enumerate(pieces)]
        # a dynamic KV cache: a file's few windows would not repay compiling a static cache's step
        return self.model.generate(collate(items), modality=modality or pieces[0].modality,
                                   beam_size=self.beam_size, max_new_tokens=self.max_new_tokens, static=False)

    @torch.inference_mode()
    def window_texts(self, pieces: Iterable[Media], modality: str | None = None) -> list[str]:
        """The text of each of ``pieces`` (windows), generated ``WINDOW_BATCH`` at a time, in ``modality``
        (default: the streams the pieces have)."""
        texts, batch = [], []
        for piece in pieces:
            batch.append(piece)
            if len(batch) == WINDOW_BATCH:
                texts += self._generate(batch, modality)
                batch = []
        return texts + (self._generate(batch, modality) if batch else [])

    def transcribe_file(self, path: Path, cropping=None) -> dict:
        """``path``'s transcript, with its modality, duration and number of windows; ``cropping`` as for read."""
        if cropping is not None:
            media, modality = self.read(path, cropping)
            result = self.transcribe_batch([media], modality, segments=True)[0]
            return {"modality": modality, "duration_s": result["duration_s"], "segments": len(result["segments"]),
                    "text": result["text"]}
        last: list[Media] = []

        def pieces() -> Iterator[Media]:
            for media in self.read_windows(path):
                last[:] = [media]
                yield media

        texts = self.window_texts(pieces())
        duration = (len(texts) - 1) * (self.window_s - OVERLAP_S) + last[0].duration_s
        return {"modality": last[0].modality, "duration_s": round(duration, 3), "segments": len(texts),
                "text": join_overlapping(texts)}

    def transcribe(self, source: Source | list[Source], modality: str | None = None, segments: bool = False):
        """The text of ``source``: a file path, 16-kHz mono float audio as a numpy array, or ``Media``; a list
        of them gives a list, their windows generated together. With ``segments`` each result is a dict:
        ``text``, ``duration_s`` and ``segments`` (each window's ``start``, ``end`` in seconds and ``text``;
        windows overlap by ``OVERLAP_S``, which ``text`` does not repeat)."""
        if isinstance(source, (list, tuple)):
            return self.transcribe_batch(list(source), modality, segments)
        if isinstance(source, (str, Path)) and not segments:
            return self.transcribe_file(Path(source))["text"]  # window by window: memory does not grow
        return self.transcribe_batch([source], modality, segments)[0]

    def transcribe_batch(self, sources: list[Source], modality: str | None = None, segments: bool = False) -> list:
        """``transcribe`` of each of ``sources`` (files read whole), windows of one modality batched together."""
        medias = [self._as_media(source) for source in sources]
        spans = [windows(media.duration_s, self.window_s) for media in medias]
        pieces: dict[str, list[tuple[int, tuple[float, float], Media]]] = {}
        for index, media in enumerate(medias):
            for span in spans[index]:
                piece = media.cut(*span)
                pieces.setdefault(modality or piece.modality, []).append((index, span, piece))
        texts = {}
        for piece_modality, group in pieces.items():
            for (index, span, _), text in zip(group, self.window_texts((p for *_, p in group), piece_modality)):
                texts[index, span] = text
        results = []
        for index, media in enumerate(medias):
            parts = [texts[index, span] for span in spans[index]]
            text = join_overlapping(parts)
            results.append(text if not segments else {
                "text": text, "duration_s": round(media.duration_s, 3),
                "segments": [{"start": round(start, 3), "end": round(end, 3), "text": part}
                             for (start, end), part in zip(spans[index], parts)]})
        return results

    def _as_media(self, source: Source) -> Media:
        if isinstance(source, Media):
            return source
        if isinstance(source, np.ndarray):
            if source.ndim != 1 or not np.issubdtype(source.dtype, np.floating):
                raise MediaError("audio array", f"expected 16-kHz mono float samples (1-D), got {source.dtype} "
                                 f"of shape {source.shape}")
            return Media(audio=source.astype(np.float32, copy=False))
        return self.read(Path(source))[0]


def load(path: str | Path, device: str = "auto", beam_size: int = 1, precision: str = "auto",
         cuda_graphs: bool = True) -> Transcriber:
    """A checkpoint ready to transcribe: bf16 on a GPU, fp32 on the CPU unless ``precision`` says otherwise."""
    from ..model.checkpoint import load_checkpoint
    from ..model.precision import for_inference
    from ..runtime.distributed import pick_device

    model = for_inference(load_checkpoint(Path(path), pick_device(device)), precision)
    model.use_cuda_graphs(cuda_graphs)
    return Transcriber(model, beam_size=beam_size)


def _speed(media_s: float, seconds: float) -> dict:
    """Wall seconds and the real-time factor (media seconds per wall second, RTFx)."""
    return {"decode_s": round(seconds, 3), "rtfx": round(media_s / max(seconds, 1e-9), 1)}


class TranscribeFailed(ClipWhisperError):
    """Some files could not be transcribed (each named above, with its reason); the rest were."""


def run_transcribe(config, files: list[Path], output_format: str = "text", cropping=None) -> None:
    if output_format not in ("text", "json"):
        raise typer.BadParameter(f"--format must be text or json, not {output_format!r}")
    transcriber = load(config.model_path, config.device, beam_size=config.beam_size, precision=config.precision,
                       cuda_graphs=config.cuda_graphs)
    results, failed, started = [], [], time.perf_counter()
    for path in files:  # a file that fails is reported and the others still transcribed
        try:
            began = time.perf_counter()
            result = transcriber.transcribe_file(path, cropping)
            result |= _speed(result["duration_s"], time.perf_counter() - began)
        except ClipWhisperError as exc:
            if exc.exit_code != EXIT_RUNTIME:  # a usage error (a bad --prepare) stops at once, exit 2
                raise
            failed.append(str(exc))
            results.append({"file": str(path), "error": str(exc)})
            if output_format == "text" and len(files) > 1:
                typer.echo(f"error: {exc}", err=True)
            continue
        results.append({"file": str(path), **result})
        if output_format == "text":
            typer.echo(result["text"] if len(files) == 1 else f"{path}\t{result['text']}")
    if output_format == "json":
        typer.echo(json.dumps(results, indent=2))
    done = [r for r in results if "error" not in r]
    if done:
        media_s = sum(r["duration_s"] for r in done)
        total = _speed(media_s, time.perf_counter() - started)
        typer.echo(f"transcribed {len(done)} file(s), {media_s:.1f} s of media in "
                   f"{total['decode_s']:.1f} s: RTFx {total['rtfx']:.1f}", err=True)
    if failed:  # exit 1 after every result is out; one file's failure is its own message
        raise TranscribeFailed(failed[0] if len(files) == 1 else
                               f"{len(failed)} of {len(files)} files failed (first: {failed[0]})")
