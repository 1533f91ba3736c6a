"""Fuzzing the parsers that read user files: whatever the bytes, only the documented errors come out."""

import json
import shutil
import struct
import tempfile
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from safetensors.torch import save

from clipwhisper.config import TrainConfig, resolve
from clipwhisper.data.manifest import read_manifest
from clipwhisper.errors import CheckpointError, ConfigError, ManifestError
from clipwhisper.inference.records import HypsFile
from clipwhisper.model.checkpoint import load_weights_file, read_checkpoint_config, read_header
from clipwhisper.runtime.folder_claim import settle_identity
from clipwhisper.training.run_folder import RunFolder
from clipwhisper.training.state import capture_train_state, load_train_state, write_train_state

MANY = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Lines that look like manifests, so the fuzzer reaches past the first check as well as failing it.
tsv_field = st.one_of(st.text(max_size=8), st.integers(-5, 10**6).map(str), st.sampled_from(["", "a.wav", "v.mp4"]))
tsv_line = st.lists(tsv_field, min_size=0, max_size=7).map("\t".join)
tsv_text = st.lists(tsv_line, max_size=6).map("\n".join)


def written(data: bytes, name: str) -> Path:
    folder = Path(tempfile.mkdtemp())
    path = folder / name
    path.write_bytes(data)
    return path


@MANY
@given(tsv=st.one_of(st.binary(max_size=300), tsv_text.map(str.encode)), wrd=st.binary(max_size=200))
def test_manifest_reader(tsv, wrd):
    path = written(tsv, "set.tsv")
    path.with_suffix(".wrd").write_bytes(wrd)
    try:
        utterances = read_manifest(path)
    except ManifestError as exc:
        assert str(path.with_suffix("")) in str(exc)  # names set.tsv or set.wrd
        return
    assert len(utterances) == len({u.id for u in utterances})
    assert all(u.n_video_frames >= 0 and u.n_audio_samples >= 0 for u in utterances)


yaml_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=10)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=12), inner, max_size=3)),
    max_leaves=8,
)
config_keys = st.sampled_from(["batch_size", "learning_rate", "data", "model", "precision", "max_epochs", "seed",
                               "warmup_steps", "typo_key", "feature_cache", "on_bad_sample"])


@MANY
@given(document=st.one_of(
    st.dictionaries(config_keys, yaml_values, max_size=4).map(lambda d: yaml.safe_dump(d).encode()),
    st.binary(max_size=200),
))
@example(document=b"?")  # {None: None}: a key that is not a name (found by this test in CI)
@example(document=b"1: 2")
def test_config_loader(document):
    path = written(document, "config.yaml")
    try:
        config = resolve(TrainConfig, path)
    except ConfigError as exc:
        assert str(path) in str(exc)
        return
    assert isinstance(config, TrainConfig)


def safetensors_bytes() -> bytes:
    return save({"weight": torch.arange(12, dtype=torch.float32).reshape(3, 4)})


@MANY
@given(data=st.one_of(
    st.binary(max_size=300),
    st.integers(0, len(safetensors_bytes())).map(lambda n: safetensors_bytes()[:n]),  # truncated
    st.integers(2**20, 2**63 - 1).map(lambda n: struct.pack("<Q", n) + b"{}"),  # enormous header length
    st.binary(min_size=1, max_size=40).map(lambda junk: struct.pack("<Q", len(junk)) + junk),  # junk header
))
def test_checkpoint_weights_loader(data):
    path = written(data, "model.safetensors")
    try:
        tensors = load_weights_file(path)
    except CheckpointError as exc:
        assert str(path) in str(exc)
        return
    assert all(torch.is_tensor(t) for t in tensors.values())


@MANY
@given(manifest=st.one_of(st.binary(max_size=200), yaml_values.map(lambda v: json.dumps(v).encode())))
def test_checkpoint_config_reader(manifest):
    folder = written(manifest, "config.json").parent
    try:
        read_checkpoint_config(folder)
    except CheckpointError as exc:
        assert str(folder) in str(exc)


# -- config.json of a real checkpoint, and the files of run and decode folders -----------------------------------

json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                                     st.text(max_size=10)),
                           lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                   st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                           max_leaves=8)


def places(value, path=()):
    """Every key path in a JSON value: where a mutation can land."""
    yield path
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else []
    for key, item in items:
        yield from places(item, (*path, key))


def mutated(config: dict, path: tuple, replacement, delete: bool) -> dict:
    config = json.loads(json.dumps(config))
    if not path:
        return replacement
    parent = config
    for key in path[:-1]:
        parent = parent[key]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = replacement
    return config


@pytest.fixture(scope="module")
def checkpoint_copy(checkpoint, tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzzed") / "ck"
    shutil.copytree(checkpoint, folder)
    return folder, json.loads((folder / "config.json").read_text())


@MANY
@given(data=st.data(), replacement=json_values, delete=st.booleans())
def test_a_checkpoints_config_json_mutated_anywhere(checkpoint_copy, data, replacement, delete):
    """One key of a real checkpoint's config.json replaced by any JSON value, or deleted: the model settings are
    validated or refused with a CheckpointError naming the file, never anything else."""
    folder, config = checkpoint_copy
    path = data.draw(st.sampled_from(list(places(config))))
    (folder / "config.json").write_text(json.dumps(mutated(config, path, replacement, delete and bool(path))))
    try:
        read_header(folder)
    except CheckpointError as exc:
        assert str(folder) in str(exc)


@MANY
@given(lines=st.lists(st.one_of(st.binary(max_size=40), json_values.map(lambda v: json.dumps(v).encode())),
                      max_size=6))
def test_run_and_decode_folder_jsonl_files(lines):
    """train_log.jsonl and hyps.jsonl with anything in them: whole records kept, the rest dropped, no error."""
    folder = Path(tempfile.mkdtemp())
    data = b"\n".join(lines)
    (folder / "train_log.jsonl").write_bytes(data)
    (folder / "hyps.jsonl").write_bytes(data)
    RunFolder(folder).truncate_log_after(5)
    assert all(json.loads(line).get("step", 0) <= 5 for line in (folder / "train_log.jsonl").read_text().splitlines())
    HypsFile(folder / "hyps.jsonl")


@MANY
@given(identity=st.one_of(st.binary(max_size=60), json_values.map(lambda v: json.dumps(v).encode())))
def test_a_folders_identity_json(identity):
    folder = Path(tempfile.mkdtemp())
    (folder / "identity.json").write_bytes(identity)
    try:
        settle_identity(folder, {"beam_size": 1}, "advice")
    except ConfigError as exc:
        assert str(folder) in str(exc)


@pytest.fixture(scope="module")
def train_state(tmp_path_factory):
    layer = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(layer.parameters())
    layer(torch.ones(1, 2)).sum().backward()
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    folder = tmp_path_factory.mktemp("state") / "train_state"
    write_train_state(folder, capture_train_state(optimizer=optimizer, scheduler=scheduler, scaler=None,
                                                  progress={"step": 1}))
    return folder, optimizer, scheduler, json.loads((folder / "state.json").read_text())


@MANY
@given(data=st.data(), replacement=json_values, delete=st.booleans())
def test_a_training_states_json_mutated_anywhere(train_state, data, replacement, delete):
    folder, optimizer, scheduler, state = train_state
    path = data.draw(st.sampled_from(list(places(state))))
    (folder / "state.json").write_text(json.dumps(mutated(state, path, replacement, delete and bool(path))))
    try:
        load_train_state(folder, optimizer=optimizer, scheduler=scheduler, scaler=None)
    except CheckpointError as exc:
        assert str(folder) in str(exc)
