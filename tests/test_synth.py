import dataclasses

import numpy as np
import pytest

from clipwhisper.data.manifest import read_manifest
from clipwhisper.data.media import SAMPLE_RATE, load_audio, load_video
from clipwhisper.synth.corpus import VOICES, SynthOptions, make_jobs, speak, synthesise
from clipwhisper.synth.grammar import SLOTS, VOCABULARY, spoken_text
from clipwhisper.synth.mouth import random_appearance, render_frame
from clipwhisper.synth.visemes import mouth_track, shape_of


def test_grid_vocabulary_has_51_words():
    assert len(VOCABULARY) == len(set(VOCABULARY)) == 51


def test_letter_a_is_spoken_as_its_name():
    assert spoken_text("set red at a one now") == "set red at [[eI]] one now"


def test_splits_and_layout(synth_corpus):
    sizes = {}
    for split in ("train", "valid", "test"):
        utts = read_manifest(synth_corpus / f"{split}.tsv")
        sizes[split] = len(utts)
        for u in utts:
            words = u.text.split()
            assert len(words) == 6 and all(w in slot for w, slot in zip(words, SLOTS))
            assert u.audio.is_file() and u.video.is_file()
    assert sizes == {"train": 96, "valid": 12, "test": 12}
    babble = load_audio(synth_corpus / "noise" / "babble.wav")
    assert len(babble) >= 20 * SAMPLE_RATE and np.sqrt(np.mean(babble**2)) > 0.03
    training_babble = load_audio(synth_corpus / "noise" / "babble-train.wav")  # other talkers: not the test noise
    assert len(training_babble) == len(babble) and np.sqrt(np.mean(training_babble**2)) > 0.03
    assert np.corrcoef(babble, training_babble)[0, 1] < 0.2


def test_speech_is_not_silence_and_lasts_as_long_as_its_phonemes(synth_corpus):
    u = read_manifest(synth_corpus / "test.tsv")[0]
    audio = load_audio(u.audio)
    assert abs(len(audio) - u.n_audio_samples) <= 1
    assert np.sqrt(np.mean(audio**2)) > 0.01
    job = next(j for j in make_jobs(120, 7, prefix="") if j.uid == u.id)
    samples, phonemes = speak(job)  # this process's engine has spoken before: equal to a few ms
    assert abs(len(samples) - u.n_audio_samples) < 0.02 * SAMPLE_RATE
    assert len(phonemes) >= 12  # six words
    last_sound = max(p.start_s for p in phonemes if not p.symbol.startswith("_"))
    assert last_sound < len(samples) / SAMPLE_RATE < last_sound + 1.0
    frames = load_video(u.video, 48)
    assert abs(len(frames) - u.n_video_frames) <= 1
    assert abs(u.n_video_frames / 25 - u.n_audio_samples / SAMPLE_RATE) < 0.05


def _dark_fraction(frames: np.ndarray) -> np.ndarray:
    """Share of each frame darker than half its median brightness: the open mouth."""
    brightness = frames.astype(np.float32).mean(axis=-1)
    median = np.median(brightness, axis=(1, 2), keepdims=True)
    return (brightness < 0.5 * median).mean(axis=(1, 2))


def test_video_follows_the_visemes(synth_corpus):
    """The decoded video's open-mouth area tracks the phoneme timeline's opening."""
    u = read_manifest(synth_corpus / "train.tsv")[3]
    job = next(j for j in make_jobs(120, 7, prefix="") if j.uid == u.id)
    samples, phonemes = speak(job)
    track = mouth_track(phonemes, len(samples) / SAMPLE_RATE, 25.0)
    frames = load_video(u.video, 48)
    n = min(len(track), len(frames))
    correlation = np.corrcoef(track[:n, 0], _dark_fraction(frames[:n]))[0, 1]
    assert correlation > 0.8


def test_bilabials_look_alike_and_differ_from_open_vowels():
    look = random_appearance(np.random.default_rng(0))
    p, b, a = (render_frame(np.array(shape_of(s)), look, 48) for s in ("p", "b", "'a"))
    assert np.array_equal(p, b)
    assert np.abs(p.astype(int) - a.astype(int)).mean() > 5


def test_same_seed_same_corpus(tmp_path):
    first, second = tmp_path / "one", tmp_path / "two"
    # 12 babble clips: a pool of 1 or 2 workers would hand them out in chunks of 3 or 2, and eSpeak carries
    # state from one call to the next within a process
    synthesise(first, SynthOptions(utterances=6, seed=3, image_size=32, babble_utterances=12, workers=1))
    synthesise(second, SynthOptions(utterances=6, seed=3, image_size=32, babble_utterances=12, workers=2))
    for name in ("train.tsv", "train.wrd", "valid.wrd", "test.tsv", "test.wrd"):
        a = (first / name).read_text().splitlines()
        b = (second / name).read_text().splitlines()
        assert a[1:] == b[1:] if name.endswith(".tsv") else a == b
    for media in ("audio", "video"):
        names = sorted(p.name for p in (first / media).iterdir())
        assert names == sorted(p.name for p in (second / media).iterdir()) and len(names) == 6
        for name in names:
            assert (first / media / name).read_bytes() == (second / media / name).read_bytes()
    for name in ("babble.wav", "babble-train.wav"):
        assert (first / "noise" / name).read_bytes() == (second / "noise" / name).read_bytes()


def test_unseen_voices_make_a_test_split_of_voices_the_corpus_never_uses(tmp_path):
    out = tmp_path / "unseen"
    counts = synthesise(out, SynthOptions(utterances=4, seed=5, image_size=32, babble_utterances=2, workers=1,
                                          voices="unseen"))
    assert counts == {"test": 4} and not (out / "train.tsv").exists()
    utts = read_manifest(out / "test.tsv")
    jobs = {j.uid: j for j in make_jobs(4, 5, prefix="u", voices="unseen")}
    seen = {voice for voice, _ in VOICES["seen"]}
    assert [u.id for u in utts] == list(jobs) and all(jobs[u.id].voice not in seen for u in utts)
    assert all(np.sqrt(np.mean(load_audio(u.audio) ** 2)) > 0.01 for u in utts)


def test_unknown_voice_set_is_a_usage_error(tmp_path):
    from typer.testing import CliRunner

    from clipwhisper.cli import app

    result = CliRunner().invoke(app, ["synth", str(tmp_path / "x"), "--voices", "famous"])
    assert result.exit_code == 2 and "'famous' is not one of seen, unseen" in result.output
    assert not (tmp_path / "x").exists()


def test_an_error_in_the_speaking_child_reaches_the_caller_and_speech_goes_on():
    job = make_jobs(1, 0, prefix="")[0]
    with pytest.raises(ValueError, match="no voice 'no-such-voice'"):
        speak(dataclasses.replace(job, voice="no-such-voice"))
    audio, phonemes = speak(job)  # the process that asked is unharmed, its next utterance as before
    assert np.array_equal(audio, speak(job)[0]) and phonemes
