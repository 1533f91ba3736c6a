"""Write a synthetic audio-visual corpus in the AV-HuBERT layout.

``OUT/{train,valid,test}.{tsv,wrd}``, ``OUT/audio/<id>.wav`` (16 kHz),
``OUT/video/<id>.mp4`` (25 fps mouth video with the speech muxed in) and
``OUT/noise/babble.wav`` mixed from utterances that are in no split, and ``OUT/noise/babble-train.wav``
from others again, for noise training that never hears the test noise.
Each utterance draws from its own seeded generator and is spoken by a fresh
engine, so the corpus does not depend on how many workers made it.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.manifest import write_manifest
from ..data.media import SAMPLE_RATE, VIDEO_FPS, resample, write_video, write_wav
from ..data.utterance import Utterance
from ..errors import ConfigError
from ..runtime.folder_claim import output_folder
from .grammar import sample_sentence, spoken_text
from .mouth import Appearance, random_appearance, render_video
from .speech import Phoneme, Speaker
from .visemes import mouth_track

# (eSpeak voice, pitch): several accents and registers. "seen" speaks the training corpus; "unseen" holds
# accents, variants and registers none of them uses, for a test set of voices a model never heard.
VOICES = {
    "seen": (("en-us", 45), ("en", 55), ("en-gb-x-rp", 40), ("en-gb-scotland", 50),
             ("en-029", 60), ("en-us+f3", 65), ("en+f2", 70), ("en-us+m3", 35)),
    "unseen": (("en-gb-x-gbclan", 48), ("en-us-nyc", 42), ("en-gb-x-gbcwmd", 58), ("en+f4", 75),
               ("en-us+m7", 30), ("en-029+f1", 62)),
}
SPLITS = ("train", "valid", "test")
BABBLE_TALKERS = 6
BABBLE_SECONDS = 30.0


@dataclass(frozen=True)
class Job:
    uid: str
    sentence: str
    voice: str
    pitch: int
    rate: int
    seed: int


@dataclass(frozen=True)
class SynthOptions:
    utterances: int = 200
    seed: int = 0
    image_size: int = 96
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    babble_utterances: int = 24
    workers: int = 0  # 0: one per core
    voices: str = "seen"  # "unseen": every utterance goes to the test split


# eSpeak's output depends slightly on what the engine spoke before (buffer state that no
# API call resets), so each utterance is spoken by a process forked for it alone from one whose
# engine is initialised but has never spoken: identical state, reproducible samples. The pool's
# workers live on (a fresh worker per utterance pays its first calls to numpy and PyAV every time:
# the corpus took 1.8x as long) and fork a child for each utterance's speech.
_speaker: Speaker | None = None


def _pristine_speaker() -> Speaker:
    global _speaker
    if _speaker is None:
        _speaker = Speaker()
    return _speaker


def make_jobs(count: int, seed: int, prefix: str, voices: str = "seen") -> list[Job]:
    rng = random.Random(seed)
    jobs = []
    for index in range(count):
        speaker = rng.randrange(len(VOICES[voices]))
        voice, pitch = VOICES[voices][speaker]
        jobs.append(Job(f"{prefix}s{speaker}_{index:05d}", sample_sentence(rng), voice,
                        pitch + rng.randint(-8, 8), rng.randint(140, 200), rng.randrange(2**31)))
    return jobs


def speak(job: Job) -> tuple[np.ndarray, list]:
    """16 kHz float32 speech for a job and its phoneme timeline, spoken in a child process (see above)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: speak, hand back the result or the error, and leave without any clean-up
        try:  # whatever happens, the child never returns into the pool worker's loop
            os.close(read)
            with os.fdopen(write, "wb") as pipe:
                pipe.write(_spoken_bytes(job))
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        header, _, samples = pipe.read().partition(b"\n")
    os.waitpid(pid, 0)
    if not header:
        raise RuntimeError(f"eSpeak died speaking {job.uid} ({job.sentence!r}, voice {job.voice})")
    told = json.loads(header)
    if "error" in told:  # raised again here: the speaker's ValueError (an unknown voice) as itself
        raise (ValueError if told["error"] == "ValueError" else RuntimeError)(told["message"])
    phonemes = [Phoneme(symbol, start) for symbol, start in told["phonemes"]]
    # resampled here: the worker's PyAV is warm
    return resample(np.frombuffer(samples, np.int16), told["sample_rate"]), phonemes


def _spoken_bytes(job: Job) -> bytes:
    """The child's answer: a JSON line (sample rate and phonemes, or the error), then the int16 samples."""
    try:
        speech = _pristine_speaker().say(spoken_text(job.sentence), voice=job.voice, rate=job.rate,
                                         pitch=job.pitch, seed=job.seed)
    except Exception as exc:  # handed to the parent, which raises it
        return json.dumps({"error": type(exc).__name__, "message": str(exc)}).encode() + b"\n"
    header = {"sample_rate": speech.sample_rate, "phonemes": [(p.symbol, p.start_s) for p in speech.phonemes]}
    return json.dumps(header).encode() + b"\n" + np.ascontiguousarray(speech.samples, np.int16).tobytes()


def _appearance(job: Job) -> Appearance:
    tag = job.uid.split("_")[0]  # [x|u]s<speaker>: one look per voice, unseen voices unseen faces
    speaker_seed = int(tag.lstrip("xus") or 0) + (500 if tag.startswith("u") else 0)
    return random_appearance(np.random.default_rng(1000 + speaker_seed))


def synth_utterance(job: Job, out_dir: Path, image_size: int) -> Utterance:
    audio, phonemes = speak(job)
    duration = len(audio) / SAMPLE_RATE
    track = mouth_track(phonemes, duration, VIDEO_FPS)
    frames = render_video(track, _appearance(job), image_size, np.random.default_rng(job.seed))
    wav, mp4 = out_dir / "audio" / f"{job.uid}.wav", out_dir / "video" / f"{job.uid}.mp4"
    write_wav(wav, audio)
    write_video(mp4, frames, VIDEO_FPS, audio=wav)
    return Utterance(job.uid, mp4, wav, len(frames), len(audio), job.sentence)


def _synth_star(args) -> Utterance:
    return synth_utterance(*args)


def _speak_audio(job: Job) -> np.ndarray:
    return speak(job)[0]


def mix_babble(clips: list[np.ndarray], seed: int, seconds: float = BABBLE_SECONDS) -> np.ndarray:
    """Several talkers at once, each a random chain of clips; normalised to RMS 0.1."""
    rng = np.random.default_rng(seed)
    length = int(seconds * SAMPLE_RATE)
    mix = np.zeros(length, np.float32)
    for _ in range(BABBLE_TALKERS):
        talker = []
        while sum(len(c) for c in talker) < length:
            talker.append(clips[int(rng.integers(len(clips)))])
        stream = np.concatenate(talker)
        start = int(rng.integers(0, len(stream) - length + 1))
        mix += stream[start:start + length]
    return (mix * (0.1 / (np.sqrt(np.mean(mix**2)) + 1e-9))).astype(np.float32)


def split_sizes(count: int, fractions: tuple[float, float, float]) -> list[int]:
    valid = max(1, round(count * fractions[1])) if count >= 3 else 0
    test = max(1, round(count * fractions[2])) if count >= 3 else 0
    return [count - valid - test, valid, test]


def synthesise(out_dir: Path, options: SynthOptions, progress: Callable[[int], None] | None = None) -> dict:
    """Make the corpus; returns counts per split. ``progress`` is called with each finished count."""
    out_dir = Path(out_dir)
    if options.voices not in VOICES:
        raise ConfigError("voices", [f"{options.voices!r} is not one of {', '.join(VOICES)}"])
    with output_folder(out_dir, {"written_by": "synth", **dataclasses.asdict(options), "workers": None}):
        return _synthesise(out_dir, options, progress)


def _synthesise(out_dir: Path, options: SynthOptions, progress: Callable[[int], None] | None) -> dict:
    for sub in ("audio", "video", "noise"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    unseen = options.voices == "unseen"
    jobs = make_jobs(options.utterances, options.seed, prefix="u" if unseen else "", voices=options.voices)
    babble_jobs = {name: make_jobs(options.babble_utterances, options.seed + offset, prefix=prefix)
                   for name, offset, prefix in (("babble", 1, "x"), ("babble-train", 2, "y"))}
    workers = options.workers or multiprocessing.cpu_count()
    _pristine_speaker()
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        utterances = []
        args = [(job, out_dir, options.image_size) for job in jobs]
        for utterance in pool.imap(_synth_star, args):
            utterances.append(utterance)
            if progress:
                progress(len(utterances))
        babbles = {name: pool.map(_speak_audio, jobs) for name, jobs in babble_jobs.items()}
    for offset, (name, clips) in enumerate(babbles.items()):
        write_wav(out_dir / "noise" / f"{name}.wav", mix_babble(clips, options.seed + offset))

    sizes = [0, 0, len(utterances)] if unseen else split_sizes(len(utterances), options.fractions)
    counts = {}
    start = 0
    for split, size in zip(SPLITS, sizes):
        part = utterances[start:start + size]
        start += size
        if part or not unseen:  # an unseen-voice set is a test split alone
            write_manifest(out_dir / f"{split}.tsv", out_dir, part, wrd=out_dir / f"{split}.wrd")
            counts[split] = len(part)
    return counts
