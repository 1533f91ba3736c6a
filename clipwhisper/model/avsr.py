"""The assembled model: encoders -> connectors -> fusion -> causal LLM.

Sequence: ``[BOS] prompt <modality block> transcript EOS``. The loss covers
the transcript and EOS only; the transcript enters as teacher-forced targets.
Every item has the same prefix length (the modality block is padded with
masked tokens), so generation needs no left padding, and positions come from
the attention mask as ``generate`` computes them. Training packs each row's
attended tokens to its front instead and runs the LLM without a mask: the same
positions and attention, and SDPA's flash kernel.
"""

from __future__ import annotations

import contextlib
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.profiler import record_function

from ..config import ModelConfig
from ..data.batch import Batch
from ..modality import streams_of
from .audio_encoder import WhisperAudioEncoder
from .causal import causal_only
from .components import COMPONENTS
from .connector import Connector
from .ctc import CHARACTER_BLANK, character_targets, ctc_loss
from .fusion import Fusion
from .graphs import TrainingGraphs, graphs_of
from .llm import beam_prefix_cache, decoder_of
from .padding import fixed_generation_shape, pad_to_multiple
from .single_query import single_query_steps
from .transfer import to_device
from .video_encoder import ClipVideoEncoder

IGNORE_INDEX = -100
# Generation's prefix is padded to a multiple of this many tokens where its step is compiled (one compiled
# shape per multiple): coarse, since every new shape costs a compilation and the padding only a few
# masked positions in attention.
PREFIX_MULTIPLE = 128


def packing_order(mask: torch.Tensor) -> torch.Tensor:
    """Per row, the indices of the attended tokens in order, then those of the masked ones."""
    return torch.sort((~mask).to(torch.uint8), dim=1, stable=True).indices


class AVSRModel(nn.Module):
    feature_sink = None  # called with what a frozen encoder computed, e.g. features.FeatureCache.put

    def __init__(self, config: ModelConfig, tokenizer, llm: nn.Module,
                 audio_encoder: WhisperAudioEncoder | None, video_encoder: ClipVideoEncoder | None):
        super().__init__()
        self.config = config
        self.tokenizer = tokenizer
        self.streams = streams_of(config.modality)
        self.llm = llm
        table = llm.get_input_embeddings().weight
        hidden = table.shape[1]
        self.audio_encoder = audio_encoder
        self.video_encoder = video_encoder

        def connector(encoder, settings):
            own_ctc_head = settings.ctc_weight > 0 and settings.ctc_units == "tokens" and table.requires_grad
            return Connector(encoder.output_size, hidden, settings, ctc_table=table if own_ctc_head else None)

        self.audio_connector = connector(audio_encoder, config.audio_connector) if audio_encoder else None
        self.video_connector = connector(video_encoder, config.video_connector) if video_encoder else None
        self.fusion = Fusion(config.fusion, hidden, self.streams)
        self.llm_graphs = TrainingGraphs(self._decode_packed, llm)
        self.use_cuda_graphs()
        prompt = tokenizer(config.prompt, add_special_tokens=False)["input_ids"]
        bos = [] if tokenizer.bos_token_id is None else [tokenizer.bos_token_id]  # some LLMs (Qwen) have none
        self.register_buffer("prompt_ids", torch.tensor([*bos, *prompt]), persistent=False)

    @classmethod
    def build(cls, config: ModelConfig, tokenizer, llm: nn.Module) -> AVSRModel:
        streams = streams_of(config.modality)
        audio = WhisperAudioEncoder.build(config.audio_encoder) if "audio" in streams else None
        video = ClipVideoEncoder.build(config.video_encoder) if "video" in streams else None
        model = cls(config, tokenizer, llm, audio, video)
        for encoder, settings in ((audio, config.audio_encoder), (video, config.video_encoder)):
            if encoder is not None and not settings.trainable:
                encoder.requires_grad_(False)
        return model

    # -- components ---------------------------------------------------------------------------
    def components(self) -> dict[str, nn.Module]:
        """Named parts, for parameter tables and update logs (the LLM split into base and LoRA)."""
        parts = {component.name: getattr(self, component.attribute) for component in COMPONENTS}
        return {name: module for name, module in parts.items() if module is not None}

    def use_cuda_graphs(self, wanted: bool = True, wrapper: Literal["ddp", "fsdp"] | None = None) -> None:
        """Where CUDA graphs may run (only ever on a GPU, where each ``applies``), decided here alone: nowhere
        unless ``wanted`` (``--no-cuda-graphs``) or under FSDP (a graph would read weights that FSDP frees and
        gathers again every step); the LLM's training graphs not under DDP (its gradient accumulators live on
        the default stream, which a backward captured on another stream cannot wait on), nor for a full
        fine-tune (they keep each shape's parameter gradients: a whole LLM's), nor with checkpointed layers
        (recomputation inside a graph is untested). Generation's compiled per-token step, whose graphs
        transformers captures, follows the same switch (``generate``)."""
        for graphs in graphs_of(self):
            graphs.enabled = wanted and wrapper != "fsdp"
        self.static_generation = wanted and wrapper is None
        llm = self.config.llm
        self.llm_graphs.enabled &= wrapper != "ddp" and llm.finetune != "full" and not llm.gradient_checkpointing

    def encoder_is_frozen(self, encoder: nn.Module | None) -> bool:
        return encoder is not None and not any(p.requires_grad for p in encoder.parameters())

    def train(self, mode: bool = True):
        super().train(mode)
        for encoder in (self.audio_encoder, self.video_encoder):
            if self.encoder_is_frozen(encoder):
                encoder.eval()  # frozen encoders never see dropout or batch statistics
        return self

    @property
    def device(self) -> torch.device:
        return self.prompt_ids.device

    # -- inputs ---------------------------------------------------------------------------------
    def _connector(self, stream: str) -> Connector:
        return self.audio_connector if stream == "audio" else self.video_connector

    def _stream_tokens(self, stream: str, batch: Batch,
                       frames: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The stream's LLM-space tokens, from its encoder ``frames`` where the caller has them."""
        if not batch.has(stream):
            hidden = self.llm.get_input_embeddings().embedding_dim  # not in this batch: an empty, masked block
            return self._empty(len(batch), hidden)
        return self._connector(stream)(*(frames or self._features(stream, batch)))

    def _stream_frames(self, stream: str, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        if not batch.has(stream):
            encoder = self.audio_encoder if stream == "audio" else self.video_encoder
            return self._empty(len(batch), encoder.output_size)
        return self._features(stream, batch)

    def _empty(self, size: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.zeros(size, 0, width, device=self.device),
                torch.zeros(size, 0, dtype=torch.bool, device=self.device))

    def _features(self, stream: str, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder output for every row: from the feature cache where the batch carries it, else encoded."""
        media, cached = batch.media.get(stream), batch.features.get(stream)
        if cached is None:
            return self._encode(stream, media.values, media.lengths, batch.ids)
        features = to_device(cached.values, self.device)
        lengths = to_device(cached.lengths, self.device)
        if media is not None:  # some rows not cached yet: encode those, merge them in
            todo = media.lengths > 0
            rows = todo.nonzero().flatten().tolist()
            new, new_mask = self._encode(stream, media.values[todo], media.lengths[todo],
                                         [batch.ids[row] for row in rows])
            width = max(features.shape[1], new.shape[1])
            features = F.pad(features, (0, 0, 0, width - features.shape[1])).to(new.dtype)
            features[rows] = F.pad(new, (0, 0, 0, width - new.shape[1]))
            lengths[rows] = new_mask.sum(1)
        return features, torch.arange(features.shape[1], device=self.device)[None, :] < lengths[:, None]

    def _encode(self, stream: str, media: torch.Tensor, lengths: torch.Tensor, ids: list[str]):
        encoder = self.audio_encoder if stream == "audio" else self.video_encoder
        frozen = self.encoder_is_frozen(encoder)
        context = contextlib.ExitStack()
        if frozen:  # no gradients, and its weights' own dtype rather than autocast (precision.py says why)
            context.enter_context(torch.no_grad())
            context.enter_context(torch.autocast(self.device.type, enabled=False))
        with context, record_function(f"encode {stream}"):
            features, mask = encoder(to_device(media, self.device), lengths)
        if frozen and self.feature_sink is not None:
            self.feature_sink(stream, ids, features, mask)
        return features, mask

    def _keep(self, batch: Batch, modality: str) -> dict[str, torch.Tensor]:
        """Which items use which stream: the requested modality, minus modality dropout in training. An item
        whose audio training made noisy keeps its video: the noise is there to teach turning to the lips, and
        noisy audio shown alone teaches guessing from it instead (on the demo, babble at 0 dB: audio+video
        40.5% WER with this rule against 49.2% without; docs/demo.md)."""
        size = len(batch)
        wanted = streams_of(modality)
        keep = {s: torch.full((size,), s in wanted and batch.has(s), device=self.device)
                for s in self.streams}
        if self.training and len(self.streams) == 2 and modality == "both":
            draw = torch.rand(size, device=self.device)
            fusion = self.config.fusion
            keep["audio"] &= ~(draw < fusion.audio_drop)
            keep["video"] &= ~((draw >= fusion.audio_drop) & (draw < fusion.audio_drop + fusion.video_drop))
            if any(batch.noisy) and batch.has("video"):
                keep["video"] |= torch.tensor(batch.noisy, device=self.device)
        return keep

    def prefix(self, batch: Batch, modality: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings and mask of ``[BOS] prompt <modality block>`` for a batch."""
        return self._prefix(self._tokens(batch), batch, modality or self.config.modality)

    def _tokens(self, batch: Batch) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        return {s: self._stream_tokens(s, batch) for s in self.streams}

    def _encoded(self, batch: Batch) -> tuple[dict, dict]:
        """Each stream's encoder frames and the tokens made from them, with their masks."""
        frames = {s: self._stream_frames(s, batch) for s in self.streams}
        return frames, {s: self._stream_tokens(s, batch, frames[s]) for s in self.streams}

    def _prefix(self, tokens: dict, batch: Batch, modality: str) -> tuple[torch.Tensor, torch.Tensor]:
        block, block_mask = self.fusion(tokens, self._keep(batch, modality))
        embed = self.llm.get_input_embeddings()
        size = block.shape[0]
        prompt = embed(self.prompt_ids)[None].expand(size, -1, -1)
        prompt_mask = torch.ones(size, len(self.prompt_ids), dtype=torch.bool, device=self.device)
        return torch.cat([prompt, block.to(prompt.dtype)], dim=1), torch.cat([prompt_mask, block_mask], dim=1)

    def target_tokens(self, texts: list[str]) -> int:
        """How many tokens the loss covers for ``texts``."""
        return sum(len(ids) for ids in self.target_ids(texts))

    def target_ids(self, texts: list[str]) -> list[list[int]]:
        encoded = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        return [ids + [self.tokenizer.eos_token_id] for ids in encoded]

    # -- training and decoding ------------------------------------------------------------------
    def forward(self, batch: Batch, modality: str | None = None, reduction: str = "mean") -> torch.Tensor:
        """Cross-entropy over transcript and EOS tokens, plus the streams' CTC losses where their connectors
        set a ``ctc_weight``: per target token, or (``reduction="sum"``) summed."""
        modality = modality or self.config.modality
        frames, tokens = self._encoded(batch)
        prefix, prefix_mask = self._prefix(tokens, batch, modality)
        targets = self.target_ids(batch.texts)
        size, width = len(targets), max(len(t) for t in targets)
        ids = torch.full((size, width), self.tokenizer.pad_token_id, dtype=torch.long)
        target_mask = torch.zeros(size, width, dtype=torch.bool)
        for row, target in enumerate(targets):  # built on the host: one copy to the device, not one per row
            ids[row, : len(target)] = torch.tensor(target)
            target_mask[row, : len(target)] = True
        ids, target_mask = to_device(ids, self.device), to_device(target_mask, self.device)
        embeds = torch.cat([prefix, self.llm.get_input_embeddings()(ids)], dim=1)
        mask = torch.cat([prefix_mask, target_mask], dim=1)
        with record_function("llm"):
            hidden = self._llm_hidden(embeds, mask)
        # Logits only where a target is predicted (the prefix's last token onwards): with a 128k
        # vocabulary, logits over the whole modality block would cost more memory than the LLM itself.
        first = prefix_mask.sum(1, keepdim=True) - 1  # where each row's first target is predicted, once packed
        at = (first + torch.arange(width, device=self.device))[..., None].expand(-1, -1, hidden.shape[-1])
        logits = self.llm.get_output_embeddings()(hidden.gather(1, at)).float()
        labels = ids.masked_fill(~target_mask, IGNORE_INDEX)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.view(-1), ignore_index=IGNORE_INDEX,
                               reduction="sum")
        ctc = self._ctc(frames, tokens, batch.texts, targets, modality)
        return (loss + ctc) / (1 if reduction == "sum" else target_mask.sum())

    def _llm_hidden(self, embeds: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The LLM's last hidden states for ``embeds`` with its attended tokens packed to the front of each row.

        Packed rows end in padding, which a causal LLM's real tokens never see: the LLM runs without an
        attention mask (causal.py), so SDPA takes its flash kernel and the host never waits for the mask's
        checks. Positions and attention equal those of the unpacked sequence under its mask, as
        ``generate`` sees it. For the same reason the rows may be padded further, to the few lengths the
        LLM's CUDA graphs are captured for in training on a GPU (graphs.py)."""
        packed = embeds.gather(1, packing_order(mask)[..., None].expand(-1, -1, embeds.shape[-1]))
        return self.llm_graphs(pad_to_multiple(packed, 1, self.llm_graphs.multiple(packed)))[:, : packed.shape[1]]

    def _decode_packed(self, packed: torch.Tensor) -> torch.Tensor:
        with causal_only(self.llm):
            return decoder_of(self.llm)(inputs_embeds=packed, use_cache=False).last_hidden_state  # no KV cache

    def _ctc(self, frames: dict, tokens: dict, texts: list[str], targets: list[list[int]],
             modality: str) -> torch.Tensor | float:
        """The requested streams' summed CTC losses, each times its connector's ``ctc_weight``: over LLM
        tokens, whose targets leave out EOS, which serves as the blank, or over characters. A stream that
        modality dropout hid from the LLM is scored too: its encoder learns all the same."""
        settings = {"audio": self.config.audio_connector, "video": self.config.video_connector}
        wanted = [s for s in streams_of(modality) if settings[s].ctc_weight]
        if not wanted:
            return 0.0
        table = self.llm.get_input_embeddings().weight

        def labels(units: str) -> tuple[list[list[int]], int]:
            if units == "characters":
                return character_targets(texts), CHARACTER_BLANK
            return [ids[:-1] for ids in targets], self.tokenizer.eos_token_id

        return sum(settings[s].ctc_weight
                   * ctc_loss(*self._connector(s).ctc_logits(tokens[s], frames[s], table),
                              *labels(settings[s].ctc_units)) for s in wanted)

    def generation_prefix(self, batch: Batch, modality: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``prefix`` with each row's masked tokens moved to its front (left padding), so that generation
        continues from the last attended token at the position training gives it (training packs the same
        tokens to the front of its rows). Left in place, a masked tail (the hidden audio block that ends a
        video-only prefix of a ``both`` model) is where generation would start, from an empty token."""
        prefix, mask = self.prefix(batch, modality)
        order = packing_order(~mask)  # the masked tokens first, then the attended ones, each in order
        return prefix.gather(1, order[..., None].expand(-1, -1, prefix.shape[-1])), mask.gather(1, order)

    @torch.no_grad()
    def generate(self, batch: Batch, modality: str | None = None, beam_size: int = 1, max_new_tokens: int = 64,
                 rows: int | None = None, static: bool | None = None) -> list[str]:
        """Transcripts for ``batch``. ``static`` (by default on a GPU, unless CUDA graphs are off) runs each step
        with fixed shapes. Greedy search keeps a static KV cache and transformers compiles its step, replayed as
        CUDA graphs; a compiled step serves one shape, so the prefix is padded on the left (masked, as generation
        already pads it) to a multiple of ``PREFIX_MULTIPLE`` tokens and the batch filled to ``rows`` with copies
        of its first row: a test set then compiles a handful of shapes, not one per batch. Beam search runs the
        prefix once per row, shared by the row's beams (``llm.beam_prefix_cache``); with ``static`` its generated
        tokens go into a cache of fixed size and, on a GPU, the decoder's layers replay as one CUDA graph captured
        once per search (``step_graph.py``), else its steps run eagerly."""
        prefix, mask = self.generation_prefix(batch, modality)
        if static is None:
            static = self.static_generation and self.device.type == "cuda"
        with contextlib.ExitStack() as context:
            options = {}
            if beam_size > 1:
                options = context.enter_context(beam_prefix_cache(self.llm, prefix, mask, beam_size,
                                                                  max_new_tokens if static else None))
            elif static:
                prefix, mask = fixed_generation_shape(prefix, mask, rows or len(batch), PREFIX_MULTIPLE)
                options["cache_implementation"] = "static"
            if static or beam_size > 1:
                context.enter_context(single_query_steps(self.llm))
            output = self.llm.generate(
                inputs_embeds=prefix, attention_mask=mask.long(), num_beams=beam_size, do_sample=False,
                max_new_tokens=max_new_tokens, eos_token_id=self.tokenizer.eos_token_id,
                pad_token_id=self.tokenizer.pad_token_id, **options,
            )
        texts = self.tokenizer.batch_decode(output[: len(batch)], skip_special_tokens=True)
        return [text.strip() for text in texts]
