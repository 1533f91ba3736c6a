"""The auxiliary CTC loss (a connector's ctc_weight): what it scores, and what it gives the encoders."""

import json
import shutil

import pytest
import torch
from test_train import a_batch

from clipwhisper.config import ConnectorConfig, TrainConfig, nested, packaged_config, resolve
from clipwhisper.model.ctc import CHARACTER_BLANK, CHARACTERS, character_targets, ctc_loss
from clipwhisper.training.loop import build_model

BLANK = 0
TOKENS = {"model.video_connector.ctc_units": "tokens"}  # the tiny preset reads characters


def spelled(table, sequence, sharpness=8.0):
    """Tokens equal to (sharpened) rows of ``table``: what an encoder that spells ``sequence`` would emit."""
    return sharpness * table[torch.tensor(sequence)]


def scored(tokens, table):
    """Logits of tokens over a table, as a connector's CTC head gives them."""
    return tokens @ table.T


@pytest.fixture
def table():
    return torch.nn.functional.normalize(torch.randn(12, 32, generator=torch.Generator().manual_seed(0)), dim=-1)


def test_tokens_that_spell_the_transcript_score_far_better_than_others(table):
    target = [3, 5, 5, 2]
    right = spelled(table, [3, BLANK, 5, BLANK, 5, 2])[None]  # a blank between the repeated 5s
    wrong = spelled(table, [2, BLANK, 5, BLANK, 5, 3])[None]
    mask = torch.ones(1, 6, dtype=torch.bool)
    good, bad = (ctc_loss(scored(tokens, table), mask, [target], BLANK) for tokens in (right, wrong))
    assert good.item() < 0.1 and bad.item() > 5.0


def test_rows_without_tokens_are_left_out_and_short_rows_add_nothing(table):
    target = [3, 5, 2]
    tokens = torch.stack([spelled(table, [3, 5, 2, BLANK]), spelled(table, [4, 4, 4, 4])])
    logits = scored(tokens, table)
    alone = ctc_loss(logits[:1], torch.ones(1, 4, dtype=torch.bool), [target], BLANK)
    mask = torch.tensor([[True] * 4, [False] * 4])  # the second row has no stream (e.g. an audio-only file)
    assert ctc_loss(logits, mask, [target, target], BLANK).item() == pytest.approx(alone.item())
    short = torch.tensor([[True] * 4, [True, True, False, False]])  # 2 tokens cannot carry 3 labels
    assert ctc_loss(logits, short, [target, target], BLANK).item() == pytest.approx(alone.item())
    none, head = tokens.clone().requires_grad_(), table.clone().requires_grad_()
    empty = ctc_loss(scored(none, head), torch.zeros(2, 4, dtype=torch.bool), [target, target], BLANK)
    empty.backward()  # zero, but still in the graph: DDP needs every parameter in every step
    assert empty.item() == 0.0 and none.grad is not None and head.grad is not None


def tiny_model(corpus, **flat):
    config = resolve(TrainConfig, packaged_config("tiny"), nested({"data.path": corpus, **flat}))
    torch.manual_seed(0)
    return build_model(config, ["set blue at a one now"])


def clip_gradient(model, batch) -> float:
    model.zero_grad()
    model(batch).backward()
    return sum(p.grad.abs().sum().item() for p in model.video_encoder.parameters() if p.grad is not None)


def test_character_targets_are_a_transcripts_letters_digits_and_apostrophes_without_spaces():
    labels = character_targets(["Bin blue at A 1 now's", "é !"])
    assert labels == [[CHARACTERS.index(c) + 1 for c in "binblueata1now's"], []]
    assert CHARACTER_BLANK not in labels[0]


@pytest.mark.parametrize("units", ["tokens", "characters"])
def test_ctc_in_either_unit_trains_the_encoder_of_a_stream_the_llm_does_not_see(synth_corpus, units):
    """Modality dropout that drops the video of every item: the cross-entropy gives CLIP no gradient at all,
    the CTC term does."""
    drop_video = {"model.fusion.audio_drop": 0.0, "model.fusion.video_drop": 1.0}
    plain = tiny_model(synth_corpus, **drop_video, **{"model.video_connector.ctc_weight": 0.0}).train()
    batch = a_batch(synth_corpus, plain)
    assert clip_gradient(plain, batch) == 0.0
    model = tiny_model(synth_corpus, **drop_video, **{"model.video_connector.ctc_units": units}).train()
    assert clip_gradient(model, batch) > 0.0


def test_a_connector_that_reads_characters_scores_each_encoder_frame(synth_corpus):
    """LipNet's loss: each CLIP frame, before the connector stacks frames into tokens, scored over the
    characters by the connector's own head; the LLM's table plays no part."""
    model = tiny_model(synth_corpus, **{"model.video_connector.ctc_units": "characters"}).eval()
    connector = model.video_connector
    assert connector.ctc_head is None and connector.character_head.out_features == len(CHARACTERS) + 1
    batch = a_batch(synth_corpus, model)
    with torch.no_grad():
        frames, tokens = model._encoded(batch)
        features, mask = frames["video"]
        assert features.shape[1] > tokens["video"][0].shape[1]  # frames, not the stacked tokens
        ctc = ctc_loss(connector.character_head(features), mask, character_targets(batch.texts), CHARACTER_BLANK)
        with_ctc = model(batch, modality="video", reduction="sum").item()
        model.config.video_connector.ctc_weight = 0.0
        without = model(batch, modality="video", reduction="sum").item()
    assert ctc.item() > 0
    assert with_ctc == pytest.approx(without + 0.5 * ctc.item(), rel=1e-5)


def test_the_loss_adds_each_asked_for_streams_weighted_ctc_to_the_cross_entropy(synth_corpus):
    model = tiny_model(synth_corpus, **TOKENS, **{"model.video_connector.ctc_weight": 0.0}).eval()
    batch = a_batch(synth_corpus, model)
    with torch.no_grad():
        cross_entropy = {m: model(batch, modality=m, reduction="sum").item() for m in ("both", "video")}
        tokens = model._tokens(batch)
        targets = [ids[:-1] for ids in model.target_ids(batch.texts)]  # EOS is the blank, never a label
        table = model.llm.get_input_embeddings().weight
        ctc = {s: ctc_loss(scored(tokens[s][0], table), tokens[s][1], targets, model.tokenizer.eos_token_id).item()
               for s in tokens}
        model.config.video_connector.ctc_weight, model.config.audio_connector.ctc_weight = 0.5, 0.25
        both = model(batch, reduction="sum").item()
        per_token = model(batch).item()
        video = model(batch, modality="video", reduction="sum").item()
    assert min(ctc.values()) > 0
    assert both == pytest.approx(cross_entropy["both"] + 0.5 * ctc["video"] + 0.25 * ctc["audio"], rel=1e-5)
    assert per_token == pytest.approx(both / model.target_tokens(batch.texts), rel=1e-5)
    assert video == pytest.approx(cross_entropy["video"] + 0.5 * ctc["video"], rel=1e-5)  # audio not asked for


def test_a_ctc_weight_is_not_negative():
    with pytest.raises(ValueError, match="ctc_weight"):
        ConnectorConfig(ctc_weight=-0.1)


def test_ctc_never_moves_a_fully_fine_tuned_llms_embedding_table(synth_corpus):
    """With a full fine-tune the connector scores through its own copy of the table; the table gets no CTC
    gradient, the copy does."""
    model = tiny_model(synth_corpus, **TOKENS).train()  # the preset's full fine-tune, CTC on video only
    table = model.llm.get_input_embeddings().weight
    head = model.video_connector.ctc_head
    assert model.audio_connector.ctc_head is None and torch.equal(head, table) and head is not table
    batch = a_batch(synth_corpus, model)
    model._ctc(*model._encoded(batch), batch.texts, model.target_ids(batch.texts), "both").backward()
    assert table.grad is None and head.grad.abs().sum() > 0


def test_a_frozen_or_lora_table_is_the_ctc_output_layer_itself(synth_corpus):
    for finetune in ("lora", "frozen"):
        model = tiny_model(synth_corpus, **TOKENS, **{"model.llm.finetune": finetune})
        assert model.video_connector.ctc_head is None


def test_a_checkpoint_keeps_its_character_head(checkpoint):
    from safetensors.torch import load_file

    from clipwhisper.model.checkpoint import load_checkpoint

    saved = load_file(checkpoint / "model.safetensors")  # the tiny preset's: CTC over characters on video
    loaded = load_checkpoint(checkpoint)
    assert "video_connector.ctc_head" not in saved and loaded.video_connector.ctc_head is None
    assert torch.equal(loaded.video_connector.character_head.weight, saved["video_connector.character_head.weight"])


def test_a_checkpoint_keeps_its_ctc_head_and_one_saved_before_heads_loads(synth_corpus, tmp_path):
    from safetensors.torch import load_file, save_file

    from clipwhisper.model.checkpoint import digests, load_checkpoint
    from clipwhisper.training.loop import run_training

    run_training(resolve(TrainConfig, packaged_config("tiny"), nested({
        "data.path": synth_corpus, "output_path": tmp_path / "run", "max_steps": 2, "learning_rate": 3e-3,
        "warmup_steps": 0, **TOKENS})))
    checkpoint = tmp_path / "run" / "final"
    saved = load_file(checkpoint / "model.safetensors")
    loaded = load_checkpoint(checkpoint)
    assert torch.equal(loaded.video_connector.ctc_head, saved["video_connector.ctc_head"])
    assert not torch.equal(loaded.video_connector.ctc_head, loaded.llm.get_input_embeddings().weight)  # trained
    older = tmp_path / "older"
    shutil.copytree(checkpoint, older)
    save_file({k: v for k, v in saved.items() if k != "video_connector.ctc_head"}, older / "model.safetensors")
    config = json.loads((older / "config.json").read_text())
    config["sha256"] = digests(older)
    (older / "config.json").write_text(json.dumps(config))
    model = load_checkpoint(older)
    assert torch.equal(model.video_connector.ctc_head, model.llm.get_input_embeddings().weight)
