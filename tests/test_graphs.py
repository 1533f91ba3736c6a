"""CUDA graphs on a GPU (model/graphs.py): frozen encoders and the LoRA LLM's training step, inputs padded to a few
shapes.

The padding runs here on the CPU (with the GPU's multiple forced); the graphs need a GPU, where the tests
check that replayed graphs give what the same modules compute without them."""

import pytest
import torch

from clipwhisper.config import AudioEncoderConfig, VideoEncoderConfig
from clipwhisper.data.batch import Batch, Padded
from clipwhisper.model import graphs
from clipwhisper.model.audio_encoder import WhisperAudioEncoder
from clipwhisper.model.graphs import GRANULE, graphs_of
from clipwhisper.model.video_encoder import ClipVideoEncoder

WHISPER = {"n_mels": 80, "n_audio_ctx": 1500, "n_audio_state": 64, "n_audio_head": 4, "n_audio_layer": 2}
CLIP = {"image_size": 32, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32}


def encoders() -> tuple[WhisperAudioEncoder, ClipVideoEncoder]:
    torch.manual_seed(0)
    whisper = WhisperAudioEncoder.build(AudioEncoderConfig(name=None, dims=WHISPER)).eval().requires_grad_(False)
    clip = ClipVideoEncoder.build(VideoEncoderConfig(name=None, pretrained=None, embed_dim=48, vision_cfg=CLIP,
                                                     chunk_frames=40)).eval().requires_grad_(False)
    return whisper, clip


def inputs(device) -> dict[str, torch.Tensor]:
    audio_lengths = torch.tensor([16000, 9000, 23_999])
    audio = torch.randn(3, 24000) * 0.1 * (torch.arange(24000)[None, :] < audio_lengths[:, None])
    video_lengths = torch.tensor([25, 11, 37])  # 73 frames: a full chunk of 40 and one of 33
    video = torch.randint(0, 256, (3, 37, 32, 32, 3), dtype=torch.uint8)
    return {"audio": audio.to(device), "audio_lengths": audio_lengths, "video": video.to(device),
            "video_lengths": video_lengths}


def encode(whisper, clip, batch) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        audio, audio_mask = whisper(batch["audio"], batch["audio_lengths"])
        video, video_mask = clip(batch["video"], batch["video_lengths"])
    assert audio_mask.sum(1).tolist() == [50, 29, 75] and video_mask.sum(1).tolist() == [25, 11, 37]
    return audio * audio_mask[..., None], video * video_mask[..., None]


def test_padding_to_the_gpu_multiple_changes_no_feature():
    whisper, clip = encoders()
    batch = inputs(torch.device("cpu"))
    plain = encode(whisper, clip, batch)
    for module in (whisper, clip):
        module.graphs.multiple = lambda tensor: GRANULE  # as on a GPU
    padded = encode(whisper, clip, batch)
    assert plain[0].shape == padded[0].shape and plain[1].shape == padded[1].shape
    for ours, theirs in zip(padded, plain):
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_replayed_graphs_equal_the_encoders_without_them(monkeypatch):
    whisper, clip = (encoder.cuda() for encoder in encoders())
    batch = inputs(torch.device("cuda"))
    encode(whisper.train(), clip.train(), batch)
    assert not clip.graphs.graphs and not whisper.graphs.graphs  # train mode computes otherwise: no graph
    whisper.eval(), clip.eval()
    first, again = encode(whisper, clip, batch), encode(whisper, clip, batch)  # captured, then replayed
    assert len(clip.graphs.graphs) == len(whisper.graphs.graphs) == 1  # CLIP's chunks of 40 and 33: both 64
    monkeypatch.setattr(graphs, "MAX_GRAPHS", 1)  # full: a new shape runs without a graph
    shorter = {**batch, "video": batch["video"][:, :30], "video_lengths": torch.tensor([25, 11, 30])}
    with torch.no_grad():
        clip(shorter["video"], shorter["video_lengths"])
    assert len(clip.graphs.graphs) == 1
    for module in (whisper, clip):
        module.graphs.enabled = False
    plain = encode(whisper, clip, batch)
    for ours in (first, again):
        for graphed, eager in zip(ours, plain):
            torch.testing.assert_close(graphed, eager, atol=1e-4, rtol=1e-4)


def test_fsdp_or_no_cuda_graphs_turns_every_graph_off(synth_corpus, tmp_path):
    """FSDP frees the gathered weights after each step and gathers them anew: a graph would read freed memory.
    (Sharded over two ranks as far as the trainer knows, one gloo process in fact.)"""
    import torch.distributed as dist
    from test_train import tiny

    from clipwhisper.runtime.distributed import Distributed
    from clipwhisper.training.loop import Trainer

    lora = {"model.llm.finetune": "lora"}
    model = lora_model(tmp_path / "lora")
    assert len(graphs_of(model)) == 3 and all(graphs.enabled for graphs in graphs_of(model))
    model.use_cuda_graphs(wanted=False)  # --no-cuda-graphs
    assert not any(graphs.enabled for graphs in graphs_of(model))
    dist.init_process_group("gloo", init_method="tcp://127.0.0.1:0", rank=0, world_size=1)
    try:
        sharded = Trainer(tiny(synth_corpus, tmp_path / "run", strategy="fsdp", **lora), Distributed(world=2))
    finally:
        dist.destroy_process_group()
    assert sharded.sharded and not any(graphs.enabled for graphs in graphs_of(sharded.model))


def test_ddp_turns_the_llm_graphs_off(synth_corpus, tmp_path):
    """DDP keeps the parameters' gradient accumulators, made on the default stream, which a backward captured
    on another stream cannot wait on. (Two ranks as far as the trainer knows, one gloo process in fact.)"""
    import torch.distributed as dist
    from test_train import tiny

    from clipwhisper.runtime.distributed import Distributed
    from clipwhisper.training.loop import Trainer

    lora = {"model.llm.finetune": "lora"}
    dist.init_process_group("gloo", init_method="tcp://127.0.0.1:0", rank=0, world_size=1)
    try:
        alone = Trainer(tiny(synth_corpus, tmp_path / "one", **lora), Distributed())
        replicated = Trainer(tiny(synth_corpus, tmp_path / "two", **lora), Distributed(world=2))
    finally:
        dist.destroy_process_group()
    assert alone.ddp is alone.model and alone.model.llm_graphs.enabled
    assert replicated.ddp is not replicated.model and not replicated.model.llm_graphs.enabled


def test_pad_to_multiple_appends_zeros_along_one_dimension_and_leaves_a_multiple_alone():
    from clipwhisper.model.padding import pad_to_multiple

    x = torch.ones(2, 5, 3)
    padded = pad_to_multiple(x, 1, 4)
    assert padded.shape == (2, 8, 3) and padded[:, :5].eq(1).all() and padded[:, 5:].eq(0).all()
    assert pad_to_multiple(x, 1, 5) is x and pad_to_multiple(x, 0, 1) is x


# -- the LLM decoder in training (graphs.TrainingGraphs) -----------------------------------------------------

LORA = {"model.llm.finetune": "lora", "model.llm.lora.dropout": 0.0, "model.fusion.audio_drop": 0.0,
        "model.fusion.video_drop": 0.0, "model.audio_encoder.trainable": False,
        "model.video_encoder.trainable": False}


def lora_model(folder, device="cpu"):
    from test_ctc import tiny_model

    return tiny_model(folder, **LORA).to(device).train()


def cached_batch(model, frames: list[tuple[int, int]], seed: int = 0) -> Batch:
    """A batch as the feature cache serves it: random encoder outputs of (audio, video) frames per row."""
    generator = torch.Generator().manual_seed(seed)
    batch = Batch([f"u{i}" for i in range(len(frames))], ["set blue at a one now", "blue now", "one"][: len(frames)])
    for index, (stream, encoder) in enumerate((("audio", model.audio_encoder), ("video", model.video_encoder))):
        lengths = torch.tensor([row[index] for row in frames])
        features = torch.randn(len(frames), int(lengths.max()), encoder.output_size, generator=generator)
        batch.features[stream] = Padded(features.to(model.device), lengths)
    return batch


def gradients(model, micro_batches: list[Batch]) -> dict[str, torch.Tensor]:
    """The trainable parameters' gradients summed over ``micro_batches``, from None (as the trainer zeroes)."""
    model.zero_grad(set_to_none=True)
    for batch in micro_batches:
        model(batch).backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad}


def test_padding_packed_rows_to_the_gpu_multiple_changes_neither_loss_nor_gradients(tmp_path):
    """The LLM graphs' padding (after each packed row's real tokens) on the CPU, with the GPU's multiple forced."""
    model = lora_model(tmp_path)
    batch = cached_batch(model, [(40, 21), (17, 9), (29, 14)])
    plain_loss, plain = model(batch).item(), gradients(model, [batch])
    lengths = []
    model.llm_graphs.multiple = lambda tensor: GRANULE  # as on a GPU
    function = model.llm_graphs.function
    model.llm_graphs.function = lambda packed: lengths.append(packed.shape[1]) or function(packed)
    padded_loss, padded = model(batch).item(), gradients(model, [batch])
    assert lengths and all(length % GRANULE == 0 for length in lengths)
    assert padded_loss == pytest.approx(plain_loss, rel=1e-5)
    for name, grad in plain.items():
        torch.testing.assert_close(padded[name], grad, atol=1e-5, rtol=1e-4, msg=name)


def test_a_full_fine_tune_or_checkpointed_llm_runs_without_graphs(tmp_path):
    from test_ctc import tiny_model

    assert lora_model(tmp_path).llm_graphs.enabled
    assert not tiny_model(tmp_path).llm_graphs.enabled  # the tiny preset fine-tunes the whole LLM
    assert not tiny_model(tmp_path, **{**LORA, "model.llm.gradient_checkpointing": True}).llm_graphs.enabled


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_graphed_llm_training_equals_the_llm_without_graphs(tmp_path, monkeypatch):
    """Gradients summed over two micro-batches of different lengths, three times from None (the trainer's
    zero_grad), with and without the LLM graphs; then two forwards before one backward (the second runs
    without graphs: they share memory), evaluation, which captures nothing, and a full GPU, where nothing
    more is captured."""
    import warnings

    model = lora_model(tmp_path, "cuda")
    micro = [cached_batch(model, [(40, 21), (17, 9), (29, 14)], 0), cached_batch(model, [(90, 44), (60, 30)], 1)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        graphed = [gradients(model, micro) for _ in range(3)]
    crossing = [str(w.message) for w in caught if "stream" in str(w.message)]
    assert not crossing, crossing  # gradients accumulate on the step's stream
    assert len(model.llm_graphs.graphs) == 2
    twice = model(micro[0]) + model(micro[1])
    model.zero_grad(set_to_none=True)
    twice.backward()
    together = {name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad}
    model.llm_graphs.enabled = False
    plain = gradients(model, micro)
    for grads in (*graphed, together):
        for name, grad in plain.items():
            torch.testing.assert_close(grads[name], grad, atol=1e-4, rtol=1e-3, msg=name)
    model.llm_graphs.enabled = True
    with torch.no_grad():
        model.eval()(micro[0])
    assert len(model.llm_graphs.graphs) == 2
    monkeypatch.setattr(graphs, "MEMORY_SHARE", 0.0)  # the GPU's memory taken: a new shape runs without a graph
    gradients(model.train(), [cached_batch(model, [(30, 15)], 2)])
    assert len(model.llm_graphs.graphs) == 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_beam_steps_replayed_as_one_graph_give_the_eager_tokens(tmp_path, monkeypatch):
    """Beam search's decoder layers captured once per search (``step_graph.py``) and replayed for the later
    steps: in fp32 the same tokens as the eager steps over the dynamic cache, in every modality."""
    from test_ctc import tiny_model

    from clipwhisper.model import step_graph
    from clipwhisper.model.precision import for_inference

    model = for_inference(tiny_model(tmp_path).to("cuda"), "fp32")
    batch = cached_batch(model, [(40, 21), (17, 9), (29, 14)])
    captured, capture = [], step_graph.LayerStack._capture
    monkeypatch.setattr(step_graph.LayerStack, "_capture", lambda stack, *args: (captured.append(stack),
                                                                                  capture(stack, *args)))
    with torch.inference_mode():
        for modality in ("both", "video", "audio"):
            options = {"modality": modality, "beam_size": 5, "max_new_tokens": 10}
            graphed = model.generate(batch, **options)
            assert graphed == model.generate(batch, static=False, **options) and len(set(graphed)) > 1, modality
    assert len(captured) == 3 and all(stack.graph is not None and stack.steps > 3 for stack in captured)
