"""The inference engine: chunking, real context, shifts, bags, references and normalisation."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from sepzoo.engine.apply import apply_model
from sepzoo.engine.chunks import (
    Chunk,
    ChunkPlan,
    EngineSettings,
    OverlapAdd,
    center_crop,
    extract_chunk,
    group_batches,
    plan_chunks,
    running_members,
    triangular_weight,
)
from sepzoo.models.bag import BagOfModels
from sepzoo.models.base import Separator

SAMPLE_RATE = 100  # small, so that 0.5 s shifts and segments are a few dozen samples


class Pointwise(Separator):
    """Per-source 1x1 convolution: every output sample depends on its input sample only."""

    def __init__(
        self,
        sources: list[str] | None = None,
        audio_channels: int = 2,
        segment: float | None = 0.37,
        sample_rate: int = SAMPLE_RATE,
    ) -> None:
        sources = sources or ["drums", "vocals"]
        super().__init__(sources, sample_rate, audio_channels, segment)
        self.gains = nn.Conv1d(audio_channels, len(sources) * audio_channels, kernel_size=1)

    def forward(self, mix: Tensor, references: Tensor | None = None) -> Tensor:
        batch, channels, length = mix.shape
        return self.gains(mix).view(batch, len(self.sources), channels, length)  # B, S, C, T


class LocalConv(Separator):
    """Each output sample depends on a +-K neighbourhood; asks for K samples of context per side."""

    context = 3

    def __init__(self, segment: float | None = 0.3, with_context: bool = True) -> None:
        super().__init__(["drums", "vocals"], SAMPLE_RATE, 2, segment)
        self.with_context = with_context
        self.conv = nn.Conv1d(2, 4, kernel_size=2 * self.context + 1, padding=self.context)

    def valid_length(self, length: int) -> int:
        return length + 2 * self.context if self.with_context else length

    def forward(self, mix: Tensor, references: Tensor | None = None) -> Tensor:
        batch, channels, length = mix.shape
        return self.conv(mix).view(batch, 2, channels, length)  # B, S, C, T


class ReturnsReferences(Separator):
    """An oracle that hands back the reference stems it was given."""

    needs_references = True
    domain = "oracle"

    def __init__(self, segment: float | None = 0.25) -> None:
        super().__init__(["drums", "vocals"], SAMPLE_RATE, 2, segment)

    def forward(self, mix: Tensor, references: Tensor | None = None) -> Tensor:
        assert references is not None
        return references.clone()  # B, S, C, T


class WholeTrackCounter(Separator):
    """Must see whole tracks; records the length of every call and returns the mix per source."""

    whole_track = True

    def __init__(self) -> None:
        super().__init__(["drums", "vocals"], SAMPLE_RATE, 2, segment=0.1)
        self.seen: list[Tensor] = []

    def forward(self, mix: Tensor, references: Tensor | None = None) -> Tensor:
        self.seen.append(mix.clone())
        return torch.stack([mix, 2 * mix], dim=1)  # B, S, C, T


class MultipleOf64(Pointwise):
    """Handles only lengths that are multiples of 64, like a strided encoder/decoder."""

    def valid_length(self, length: int) -> int:
        return -(-length // 64) * 64

    def forward(self, mix: Tensor, references: Tensor | None = None) -> Tensor:
        if mix.shape[-1] % 64:
            raise ValueError(f"length {mix.shape[-1]} is not a multiple of 64")
        return super().forward(mix)


def full_length(model: Separator, mix: Tensor) -> Tensor:
    with torch.no_grad():
        return model(mix.unsqueeze(0))[0]


@pytest.fixture
def mix() -> Tensor:
    return torch.randn(2, 1003, generator=torch.Generator().manual_seed(1))


@pytest.fixture
def pointwise() -> Pointwise:
    torch.manual_seed(0)
    return Pointwise()


# ----------------------------------------------------------------------------------------------
# Building blocks


@pytest.mark.parametrize("length", [1, 2, 7, 64, 101])
def test_triangular_weight_shape(length):
    weight = triangular_weight(length)
    assert weight.shape == (length,)
    assert bool((weight > 0).all())
    assert torch.equal(weight, weight.flip(0))
    assert weight.max().item() == 1.0
    middle = (length - 1) // 2
    assert bool((weight[1 : middle + 1] >= weight[:middle]).all())  # rises to the middle
    assert weight[0].item() == pytest.approx(1 / ((length + 1) // 2))


def test_triangular_weight_power_sharpens():
    base = triangular_weight(50)
    sharp = triangular_weight(50, power=3.0)
    torch.testing.assert_close(sharp, base**3)
    assert bool((sharp <= base).all()) and sharp.max().item() == 1.0


@pytest.mark.parametrize(
    ("length", "chunk", "overlap"), [(100, 30, 0.25), (100, 100, 0.5), (10, 30, 0.0), (97, 8, 0.9)]
)
def test_plan_chunks_covers_everything(length, chunk, overlap):
    offsets = plan_chunks(length, chunk, overlap)
    covered = torch.zeros(length, dtype=torch.bool)
    for offset in offsets:
        covered[offset : offset + chunk] = True
    assert bool(covered.all())
    stride = max(1, int((1 - overlap) * chunk))
    assert offsets == list(range(0, length, stride))  # the official Demucs engine's chunks


def test_plan_chunks_rejects_bad_overlap():
    with pytest.raises(ValueError, match="overlap"):
        plan_chunks(100, 10, 1.0)


def test_extract_chunk_uses_real_neighbours_and_zeros_past_the_edges():
    signal = torch.arange(1, 21, dtype=torch.float32).view(1, 20)
    torch.testing.assert_close(extract_chunk(signal, 8, 4, 9), signal[:, 6:15])  # 2 left, 3 right
    torch.testing.assert_close(extract_chunk(signal, 0, 4, 8), torch.tensor([[0.0, 0.0, 1, 2, 3, 4, 5, 6]]))
    torch.testing.assert_close(extract_chunk(signal, 18, 4, 4), torch.tensor([[19.0, 20.0, 0.0, 0.0]]))
    padded = extract_chunk(signal, 5, 6, 11)
    torch.testing.assert_close(center_crop(padded, 6), signal[:, 5:11])


def test_overlap_add_averages_with_weights():
    window = triangular_weight(4)
    accumulator = OverlapAdd([1], 6, window)
    accumulator.add(torch.full((1, 4), 2.0), 0)
    accumulator.add(torch.full((1, 4), 4.0), 2)  # its last two samples fall past the end
    result = accumulator.result()
    torch.testing.assert_close(result[0, :2], torch.full((2,), 2.0))
    torch.testing.assert_close(result[0, 4:], torch.full((2,), 4.0))
    expected_middle = (2.0 * window[2:] + 4.0 * window[:2]) / (window[2:] + window[:2])
    torch.testing.assert_close(result[0, 2:4], expected_middle)


def test_overlap_add_of_a_stream_equals_the_whole_output():
    window = triangular_weight(10, power=2.0)
    generator = torch.Generator().manual_seed(0)
    chunks = [(offset, torch.randn(3, 10, generator=generator)) for offset in range(0, 36, 7)]  # up to 45
    whole = OverlapAdd([3], 45, window)
    stream = OverlapAdd([3], None, window)
    popped = []
    for offset, chunk in chunks:
        whole.add(chunk, offset)
        stream.add(chunk, offset)
        popped.append(stream.pop(offset + 7))  # no later chunk starts before the next offset
    popped.append(stream.pop(45))
    assert torch.equal(torch.cat(popped, dim=-1), whole.result())
    with pytest.raises(ValueError, match="already handed out"):
        stream.add(chunks[0][1], 0)


# ----------------------------------------------------------------------------------------------
# The chunk plan


def settings(segment: float | None = None, overlap: float = 0.25, batch_size: int = 4) -> EngineSettings:
    return EngineSettings(segment, overlap, 1.0, batch_size, None, False)


def test_chunk_plan_of_a_valid_length_model():
    plan = ChunkPlan(MultipleOf64(segment=1.0), settings(overlap=0.5))  # 100 samples run as 128
    assert (plan.segment_length, plan.stride, plan.padded_segment_length) == (100, 50, 128)
    assert list(plan.chunks(290)) == [
        Chunk(0, 100, 128),
        Chunk(50, 100, 128),
        Chunk(100, 100, 128),
        Chunk(150, 100, 128),
        Chunk(200, 90, 128),  # cut short by the end of the track, still widened to 128
        Chunk(250, 40, 64),  # short enough to run as 64
    ]
    assert [chunk.window_start for chunk in plan.chunks(290)] == [-14, 36, 86, 136, 181, 238]
    assert [chunk.offset for chunk in plan.chunks(290)] == plan_chunks(290, 100, 0.5)
    torch.testing.assert_close(plan.window, triangular_weight(100))
    # Batches never mix padded lengths.
    batches = list(group_batches(plan.chunks(290), batch_size=3))
    assert [[chunk.offset for chunk in batch] for batch in batches] == [[0, 50, 100], [150, 200], [250]]


def test_chunk_plan_of_a_track_still_arriving():
    plan = ChunkPlan(MultipleOf64(segment=1.0), settings(overlap=0.5))
    # The chunk at 50 reads samples 36 to 164: it is known to be a full one once 164 have arrived.
    assert plan.chunk_at(50, None, available=163) is None
    assert plan.chunk_at(50, None, available=164) == Chunk(50, 100, 128)
    assert list(plan.chunks(None, available=200)) == [Chunk(0, 100, 128), Chunk(50, 100, 128)]
    assert list(plan.chunks(None, start=100, available=10_000))[0] == Chunk(100, 100, 128)
    assert plan.first_input(100) == 100 - 128
    assert plan.next_offset(Chunk(100, 100, 128)) == 150


def test_chunk_plan_of_a_fixed_length_model():
    plan = ChunkPlan(FixedLengthRecorder(segment=0.3), settings(overlap=0.25))
    assert (plan.segment_length, plan.stride, plan.padded_segment_length) == (30, 22, 30)  # int(22.5)
    chunks = list(plan.chunks(100))
    full = [Chunk(offset, 30, 30) for offset in (0, 22, 44, 66)]
    assert chunks == [*full, Chunk(88, 12, 30)]  # a fixed-length model sees even the last one at 30
    assert chunks[-1].window_start == 79  # the short last chunk gets real context: 79 to 109
    assert len(list(group_batches(chunks, batch_size=4))) == 2


def test_chunk_plan_of_whole_tracks():
    whole = ChunkPlan(WholeTrackCounter(), settings(segment=0.2))
    assert whole.segment_length is None and whole.window is None
    assert list(whole.chunks(1003)) == [Chunk(0, 1003, 1003)]
    assert whole.chunk_at(0, None, available=10_000) is None  # waits for the end of the track
    assert whole.first_input(0) == float("-inf")
    unsegmented = ChunkPlan(MultipleOf64(segment=None), settings())
    assert list(unsegmented.chunks(1003)) == [Chunk(0, 1003, 1024)]


def test_a_segment_longer_than_the_model_accepts_is_refused_by_the_plan():
    from sepzoo.errors import SepzooError

    with pytest.raises(SepzooError, match="longer than"):
        ChunkPlan(FixedLengthRecorder(), settings(segment=0.6))


def test_running_members_are_those_that_serve_a_source():
    torch.manual_seed(0)
    first, unused, last = Pointwise(), WholeTrackCounter(), Pointwise(sources=["vocals"])
    bag = BagOfModels([first, unused, last], weights=[[1, 1], [0, 0], [0, 1]])
    assert running_members(bag) == [first, last]
    assert running_members(first) == [first]


# ----------------------------------------------------------------------------------------------
# Chunked application


@pytest.mark.parametrize(
    ("segment", "overlap", "power", "batch_size"),
    [
        (0.37, 0.25, 1.0, 4),
        (0.2, 0.5, 2.0, 1),
        (0.5, 0.0, 1.0, 3),
        (0.11, 0.9, 4.0, 64),
        (20.0, 0.25, 1.0, 2),
    ],
)
def test_chunked_output_equals_full_length_output(pointwise, mix, segment, overlap, power, batch_size):
    out = apply_model(
        pointwise, mix, segment=segment, overlap=overlap, transition_power=power, batch_size=batch_size
    )
    assert out.shape == (2, 2, 1003) and out.dtype == torch.float32
    torch.testing.assert_close(out, full_length(pointwise, mix), atol=1e-5, rtol=0)


def test_shifts_keep_a_pointwise_model_exact(pointwise, mix):
    out = apply_model(pointwise, mix, shifts=3, seed=5)
    torch.testing.assert_close(out, full_length(pointwise, mix), atol=1e-5, rtol=0)


def test_shifts_are_reproducible_and_depend_on_the_seed(mix):
    torch.manual_seed(0)
    model = LocalConv(segment=0.2, with_context=False)  # chunk edges show, so shifts matter
    first = apply_model(model, mix, shifts=2, seed=1)
    again = apply_model(model, mix, shifts=2, seed=1)
    other = apply_model(model, mix, shifts=2, seed=2)
    assert torch.equal(first, again)
    assert not torch.allclose(first, other, atol=1e-4)


def test_chunks_get_real_neighbouring_context(mix):
    torch.manual_seed(0)
    model = LocalConv(segment=0.3)
    full = full_length(model, mix)
    for overlap in (0.0, 0.25):
        torch.testing.assert_close(apply_model(model, mix, overlap=overlap), full, atol=1e-5, rtol=0)
    # Without the context the chunk edges see zeros instead of audio, and the output differs there.
    model.with_context = False
    blind = apply_model(model, mix, overlap=0.0)
    edge = 30  # the first chunk boundary (segment 0.3 s at 100 Hz)
    assert not torch.allclose(blind[..., edge - 3 : edge + 3], full[..., edge - 3 : edge + 3], atol=1e-3)
    torch.testing.assert_close(blind[..., 5:25], full[..., 5:25], atol=1e-5, rtol=0)


def test_valid_length_is_honoured(mix):
    torch.manual_seed(0)
    model = MultipleOf64(segment=1.0)  # chunks of 100 samples run as 128
    expected = torch.einsum("oc,ct->ot", model.gains.weight[:, :, 0], mix) + model.gains.bias[:, None]
    expected = expected.view(2, 2, -1).detach()
    torch.testing.assert_close(apply_model(model, mix), expected, atol=1e-5, rtol=0)
    model.segment = None  # the whole track (1003 samples) runs as 1024
    torch.testing.assert_close(apply_model(model, mix), expected, atol=1e-5, rtol=0)


def test_references_reach_the_model_aligned(mix):
    references = torch.randn(2, 2, 1003)
    model = ReturnsReferences()
    out = apply_model(model, mix, references, overlap=0.5, batch_size=3)
    torch.testing.assert_close(out, references, atol=1e-6, rtol=0)
    shifted = apply_model(model, mix, references, shifts=2)
    torch.testing.assert_close(shifted, references, atol=1e-6, rtol=0)


def test_missing_references_name_the_model(mix):
    with pytest.raises(ValueError, match="ReturnsReferences needs the reference stems"):
        apply_model(ReturnsReferences(), mix)


def test_reference_shape_is_checked(mix):
    with pytest.raises(ValueError, match=r"expected references of shape \[2, 2, 1003\]"):
        apply_model(ReturnsReferences(), mix, torch.zeros(2, 2, 1000))


def test_whole_track_model_is_called_once_with_the_whole_track(mix):
    model = WholeTrackCounter()
    out = apply_model(model, mix, segment=0.2, shifts=0)
    assert [seen.shape[-1] for seen in model.seen] == [1003]
    torch.testing.assert_close(out, torch.stack([mix, 2 * mix]))


def test_batched_input_matches_single_tracks(pointwise):
    batch = torch.randn(3, 2, 500)
    out = apply_model(pointwise, batch, segment=0.3, batch_size=2)
    assert out.shape == (3, 2, 2, 500)
    for index in range(3):
        torch.testing.assert_close(out[index], apply_model(pointwise, batch[index], segment=0.3))


def test_mono_model():
    torch.manual_seed(0)
    model = Pointwise(audio_channels=1)
    mono = torch.randn(1, 640)
    out = apply_model(model, mono)
    assert out.shape == (2, 1, 640)
    torch.testing.assert_close(out, full_length(model, mono), atol=1e-5, rtol=0)


def test_wrong_channel_count_is_refused(pointwise):
    with pytest.raises(ValueError, match=r"got \[1, 300\]"):
        apply_model(pointwise, torch.zeros(1, 300))


def test_normalize_round_trip(mix):
    model = WholeTrackCounter()
    loud = 5 * mix + 0.3
    out = apply_model(model, loud, normalize=True)
    seen = model.seen[0][0].mean(dim=0)  # the mono reference the model saw
    assert seen.mean().abs().item() < 1e-5
    assert seen.std(correction=0).item() == pytest.approx(1.0, abs=1e-4)
    # The model returns (mix, 2 * mix); the offset is restored on every stem.
    torch.testing.assert_close(out[0], loud, atol=1e-4, rtol=0)
    mean = loud.mean()
    torch.testing.assert_close(out[1], 2 * (loud - mean) + mean, atol=1e-4, rtol=0)


def test_normalize_treats_references_alike(mix):
    references = torch.randn(2, 2, 1003) * 3 + 1
    out = apply_model(ReturnsReferences(), mix, references, normalize=True)
    torch.testing.assert_close(out, references, atol=1e-5, rtol=0)


def test_leaves_mode_and_gradients_alone(pointwise, mix):
    pointwise.train()
    out = apply_model(pointwise, mix.double())
    assert pointwise.training
    assert not out.requires_grad and out.dtype == torch.float32


def test_progress_bar_goes_to_stderr(pointwise, mix, capsys):
    apply_model(pointwise, mix, progress=True)
    assert "chunk" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# Bags


def test_bag_takes_each_source_from_its_member(mix):
    torch.manual_seed(0)
    first, second = Pointwise(), Pointwise(segment=0.2)
    bag = BagOfModels([first, second], weights=[[1, 0], [0, 1]])
    out = apply_model(bag, mix)
    torch.testing.assert_close(out[0], full_length(first, mix)[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(out[1], full_length(second, mix)[1], atol=1e-5, rtol=0)


def test_bag_weights_average_per_source(mix):
    torch.manual_seed(0)
    first, second = Pointwise(), Pointwise()
    out = apply_model(BagOfModels([first, second], weights=[[3, 1], [1, 1]]), mix)
    a, b = full_length(first, mix), full_length(second, mix)
    torch.testing.assert_close(out[0], (3 * a[0] + b[0]) / 4, atol=1e-5, rtol=0)
    torch.testing.assert_close(out[1], (a[1] + b[1]) / 2, atol=1e-5, rtol=0)


def test_bag_skips_members_without_weight(mix):
    counter = WholeTrackCounter()
    torch.manual_seed(0)
    bag = BagOfModels([Pointwise(), counter], weights=[[1, 1], [0, 0]])
    apply_model(bag, mix)
    assert counter.seen == []


def test_bag_attributes():
    torch.manual_seed(0)
    bag = BagOfModels([Pointwise(segment=0.4), Pointwise(segment=0.2), Pointwise(segment=None)])
    assert bag.sources == ["drums", "vocals"] and bag.sample_rate == SAMPLE_RATE and bag.audio_channels == 2
    assert bag.segment == 0.2 and bag.domain == "waveform"
    assert not bag.needs_references and not bag.whole_track
    assert bag.weights == [[1.0, 1.0]] * 3 and len(bag.members) == 3
    mixed = BagOfModels([Pointwise(), ReturnsReferences()])
    assert mixed.domain == "hybrid" and mixed.needs_references


def test_bag_forward_matches_apply_model(mix):
    torch.manual_seed(0)
    bag = BagOfModels([Pointwise(), Pointwise()], weights=[[1, 2], [1, 0]])
    with torch.no_grad():
        direct = bag(mix.unsqueeze(0))[0]
    torch.testing.assert_close(apply_model(bag, mix), direct, atol=1e-5, rtol=0)


def test_one_target_members_make_one_bag(mix):
    torch.manual_seed(0)
    drums, vocals = Pointwise(sources=["drums"]), Pointwise(sources=["vocals"])
    bag = BagOfModels([vocals, drums], sources=["drums", "vocals"])
    assert bag.weights == [[0.0, 1.0], [1.0, 0.0]] and bag.positions == [[1], [0]]
    out = apply_model(bag, mix)
    torch.testing.assert_close(out[0], full_length(drums, mix)[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(out[1], full_length(vocals, mix)[0], atol=1e-5, rtol=0)
    with torch.no_grad():
        torch.testing.assert_close(bag(mix.unsqueeze(0))[0], out, atol=1e-5, rtol=0)
    # Without a source order the members' order of first appearance is used.
    assert BagOfModels([vocals, drums]).sources == ["vocals", "drums"]


def test_a_member_mixing_source_orders_lands_each_output_in_place(mix):
    torch.manual_seed(0)
    forward_order, reverse_order = Pointwise(), Pointwise(sources=["vocals", "drums"])
    out = apply_model(BagOfModels([forward_order, reverse_order], weights=[[1, 1], [1, 0]]), mix)
    a, b = full_length(forward_order, mix), full_length(reverse_order, mix)
    torch.testing.assert_close(out[0], (a[0] + b[1]) / 2, atol=1e-5, rtol=0)
    torch.testing.assert_close(out[1], a[1], atol=1e-5, rtol=0)


def test_bag_refuses_weight_for_a_source_a_member_lacks():
    with pytest.raises(ValueError, match=r"member 1 has a positive weight for \['drums'\]"):
        BagOfModels([Pointwise(), Pointwise(sources=["vocals"])], weights=[[1, 1], [1, 1]])
    with pytest.raises(ValueError, match="each estimated by a member"):
        BagOfModels([Pointwise(sources=["vocals"])], sources=["vocals", "bass"])


def test_bag_passes_each_member_the_references_of_its_sources(mix):
    references = torch.randn(2, *mix.shape)
    bag = BagOfModels([Pointwise(sources=["drums"]), ReturnsReferences()], weights=[[0, 0], [1, 1]])
    torch.testing.assert_close(apply_model(bag, mix, references=references), references)


@pytest.mark.parametrize(
    ("other", "attribute"),
    [
        (lambda: Pointwise(audio_channels=1), "audio_channels"),
        (lambda: Pointwise(sample_rate=8000), "sample_rate"),
    ],
)
def test_bag_members_must_agree(other, attribute):
    with pytest.raises(ValueError, match=f"bag member 1 has {attribute}="):
        BagOfModels([Pointwise(), other()])


def test_bag_weights_are_checked():
    with pytest.raises(ValueError, match="lists"):
        BagOfModels([Pointwise(), Pointwise()], weights=[[1, 1]])
    with pytest.raises(ValueError, match="positive total weight"):
        BagOfModels([Pointwise(), Pointwise()], weights=[[1, 0], [1, 0]])


class FixedLengthRecorder(Pointwise):
    """Must see every chunk at the full segment length, and accepts at most 0.5 s."""

    fixed_chunk_length = True

    def __init__(self, segment: float | None = 0.3) -> None:
        super().__init__(segment=segment)
        self.seen: list[int] = []

    @property
    def max_segment(self) -> float | None:
        return 0.5

    def forward(self, mix: Tensor, references: Tensor | None = None) -> Tensor:
        self.seen.append(mix.shape[-1])
        return super().forward(mix)


def test_fixed_length_models_see_full_segments_with_real_context(mix):
    torch.manual_seed(0)
    model = FixedLengthRecorder()
    out = apply_model(model, mix, overlap=0.25)  # 1003 samples, chunks of 30: the last ones are short
    assert set(model.seen) == {30}
    torch.testing.assert_close(out, full_length(model, mix), atol=1e-5, rtol=0)


def test_a_segment_longer_than_the_model_accepts_is_refused(mix):
    from sepzoo.errors import SepzooError

    with pytest.raises(SepzooError, match=r"segment 0.6 s is longer than .* accepts \(0.5 s"):
        apply_model(FixedLengthRecorder(), mix, segment=0.6)


def test_a_segment_kept_from_a_sample_count_runs_chunks_of_that_many_samples():
    from sepzoo.engine.chunks import EngineSettings, segment_samples
    from sepzoo.models import create_model, get_model_class
    from sepzoo.models.base import seconds_to_samples

    # 261120 / 44100 * 44100 is 261119.99999999997: truncated, a one-chunk file became two.
    assert int(261120 / 44100 * 44100) == 261119
    assert seconds_to_samples(261120 / 44100, 44100) == 261120
    assert seconds_to_samples(7.8, 44100) == 343980  # demucs's truncation where it is exact
    assert seconds_to_samples(0.99999, 10) == 9  # and where the product is not whole
    model = create_model("conv_tasnet", **get_model_class("conv_tasnet").test_kwargs, segment=261120 / 44100)
    settings = EngineSettings(None, 0.25, 1.0, 1, None, False)
    assert segment_samples(model, settings) == 261120 == model.segment_length
