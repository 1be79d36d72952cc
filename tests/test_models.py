"""Token models: shapes, causality, the delay pattern, cache == no cache, sliding context, learning."""

from __future__ import annotations

import pytest
import torch
from pianogen_transformers.delay import delay, undelay

import pianogen
from pianogen.errors import PianogenError
from pianogen.generation.sampling import make_sampler
from pianogen.registry import check_config

V = 16
TINY = dict(vocab_size=V, block_size=12, d_model=32, n_layers=2, n_heads=4, d_ff=64, dropout=0.0)
MODELS = [("baseline", 1), ("multi_output", 3), ("delay", 4)]


def tiny(name: str, n_levels: int, **overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    return pianogen.get_token_model(name, n_levels=n_levels, **{**TINY, **overrides}).eval()


def codes(B: int, K: int, T: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, V, (B, K, T), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name,K", MODELS)
def test_forward_shape_and_registration(name, K):
    model = tiny(name, K)
    assert (model.n_levels, model.vocab_size, model.block_size) == (K, V, 12)
    assert model(codes(2, K, 12)).shape == (2, K, 12, V)
    with pytest.raises(PianogenError, match="block_size"):
        model(codes(1, K, 13))


def test_defaults_are_the_reports():
    model = pianogen.get_token_model("multi_output", n_levels=4, vocab_size=1024, block_size=2048)
    c = model.config
    assert (c.d_model, c.n_layers, c.n_heads, c.d_ff, c.dropout, c.combine) == (512, 6, 8, 2048, 0.1, "concat")
    assert model.combine.in_features == 4 * 512  # levels flattened, then projected to D
    assert pianogen.get_token_model("delay", vocab_size=1024, block_size=64, n_layers=1).n_levels == 16


def test_config_errors_are_clear():
    with pytest.raises(PianogenError, match="level 1 only"):
        pianogen.get_token_model("baseline", n_levels=4, vocab_size=V, block_size=8)
    with pytest.raises(PianogenError, match="combine"):
        pianogen.get_token_model("multi_output", combine="mean", vocab_size=V, block_size=8)
    with pytest.raises(PianogenError, match="d_heads|n_heads"):
        pianogen.get_token_model("multi_output", d_model=30, n_heads=4, vocab_size=V, block_size=8)
    with pytest.raises(PianogenError, match="n_layer"):  # recipes are checked against the config dataclass
        check_config("token_model", "multi_output", {"n_layer": 6})


@pytest.mark.parametrize("combine", ["concat", "sum"])
def test_frame_models_are_causal(combine):
    model = tiny("multi_output", 3, combine=combine)
    x = codes(2, 3, 12)
    changed = x.clone()
    changed[:, :, 7:] = (changed[:, :, 7:] + 1) % V
    before, after = model(x), model(changed)
    torch.testing.assert_close(before[:, :, :7], after[:, :, :7])
    assert not torch.allclose(before[:, :, 7:], after[:, :, 7:])


def test_delay_pattern_round_trip():
    x = codes(2, 4, 5)
    steps = delay(x, pad=V)
    assert steps.shape == (2, 4, 8)
    assert (steps[:, 2, :2] == V).all() and (steps[:, 2, 2:7] == x[:, 2]).all() and (steps[:, 2, 7:] == V).all()
    assert torch.equal(undelay(steps), x)


def test_delay_logits_follow_the_contract():
    """logits[:, k, t] (scoring codes[:, k, t+1], made at delayed step t+k) read codes[:, j, t'] exactly
    when t' <= t + k - j: the level itself up to frame t, lower levels further ahead (frame t+1 included)."""
    K, T = 3, 8
    model = tiny("delay", K)
    x = codes(1, K, T)
    base = model(x)
    k, t = torch.meshgrid(torch.arange(K), torch.arange(T), indexing="ij")
    for j in range(K):
        for t_changed in range(T):
            changed = x.clone()
            changed[:, j, t_changed] = (changed[:, j, t_changed] + 1) % V
            moved = (model(changed) - base).abs().amax(dim=(0, 3)) > 1e-5  # [K, T]
            assert torch.equal(moved, t_changed <= t + k - j), (j, t_changed)


def recording(sample):
    """The sampler, keeping a copy of every logits tensor it is handed."""
    seen: list[torch.Tensor] = []

    def record(logits):
        seen.append(logits.clone())
        return sample(logits)

    return record, seen


@pytest.mark.parametrize("name,K", MODELS)
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_cache_gives_the_logits_of_recomputation_while_the_context_slides(name, K, temperature):
    """Every step's logits, with the KV cache and by full recomputation, agree to 1e-5 over 30 frames
    from an 8-frame block: the context slides (a full-context call besides the prefill) at least twice."""
    model = tiny(name, K, block_size=8)
    prompt = codes(2, K, 5)
    full_context_calls = []
    step_logits = model.step_logits

    def counting(steps, start=None, last_only=False):
        if steps.shape[2] > 1:
            full_context_calls.append(steps.shape[2])
        return step_logits(steps, start, last_only)

    runs, logits = [], []
    for cache in (True, False):
        sample, seen = recording(make_sampler(temperature, top_k=8, seed=3))
        model.step_logits = counting
        try:
            runs.append(model.generate(prompt, 30, sample, use_cache=cache))
        finally:
            del model.step_logits
        logits.append(seen)
        if cache:
            assert len(full_context_calls) >= 3, full_context_calls  # the prefill and two slides, at least
    assert runs[0].shape == (2, K, 30) and torch.equal(runs[0], runs[1])
    assert len(logits[0]) == len(logits[1]) == 30 + (K - 1 if name == "delay" else 0)
    for cached, recomputed in zip(*logits):
        torch.testing.assert_close(cached, recomputed, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name,K,mode", [("multi_output", 2, "static"), ("multi_output", 2, "dynamic"),
                                         ("delay", 3, True)])
def test_compiled_decoding_gives_the_eager_tokens_and_compiles_once(name, K, mode):
    """"static" is the CUDA-graph layout (what compile=True means on CUDA), "dynamic" the CPU's. A second
    run of another prompt and run length must reuse the first one's graph: once, the cache's length and
    the step's strides followed the run's length, and every call compiled again (seconds per call)."""
    from torch._dynamo.utils import counters

    model = tiny(name, K, block_size=8)  # 30 frames slide the context several times
    for prompt, frames in ((codes(2, K, 5), 30), (codes(2, K, 3), 4)):  # the second fits the context
        eager = model.generate(prompt, frames, make_sampler(1.0, seed=5))
        counters.clear()
        compiled = model.generate(prompt, frames, make_sampler(1.0, seed=5), compile=mode)
        assert torch.equal(eager, compiled)
    assert counters["stats"]["unique_graphs"] == 0 and not counters["graph_break"]  # the second run compiled nothing


@pytest.mark.parametrize("name,K", MODELS)
def test_generation_reports_each_frame_and_releases_its_caches(name, K):
    model = tiny(name, K, block_size=8)
    seen: list[int] = []
    out = model.generate(codes(1, K, 5), 30, make_sampler(1.0, seed=7), on_frame=seen.append)
    assert out.shape == (1, K, 30) and seen == list(range(30))
    assert model.trunk.blocks[0].attn.cache is None  # caches are released after generation


def test_sliding_keeps_the_most_recent_half():
    model = tiny("multi_output", 2, block_size=8)
    prompt = codes(1, 2, 5)
    out = model.generate(prompt, 6, make_sampler(0.0))
    full = torch.cat([prompt, out], dim=2)
    # frames 5..8 fill the 8-frame context; the 9th frame overflows it, so frame 9 is predicted
    # from the last 8 // 2 = 4 frames only, at positions 0..3
    assert torch.equal(out[:, :, 4], model(full[:, :, 5:9])[:, :, -1].argmax(-1))
    assert torch.equal(out[:, :, 3], model(full[:, :, 0:8])[:, :, -1].argmax(-1))


def test_delay_pattern_opens_with_the_special_step_as_in_audiocraft():
    """Level 0 of frame 0 is predicted from the special step alone: its logits do not depend on any code."""
    model = tiny("delay", 3)
    a, b = codes(1, 3, 6, seed=1), codes(1, 3, 6, seed=2)
    steps = model.step_logits  # [B, K, N, V]; step 0 is S
    from pianogen_transformers.delay import delay, with_special_step

    first = [steps(with_special_step(delay(x, model.pad), model.pad))[:, 0, 0] for x in (a, b)]
    torch.testing.assert_close(first[0], first[1])


@pytest.mark.parametrize("K,block", [(3, 8), (4, 8), (2, 6)])
def test_delay_generation_sees_training_windows_on_every_level(K, block):
    """Every logit generation samples from, on every level, before and after the context slides, equals
    forward() on the training window of frames its context holds (argmax, so the frames are fixed).

    The context follows the documented rule: at most block_size steps, keeping max(block_size // 2, K + 1)
    when it slides; a context starting at step s holds the window of frames s, s + 1, ..."""
    model = tiny("delay", K, block_size=block)
    T0, n = 5, 25
    prompt = codes(2, K, T0)
    sample, seen = recording(make_sampler(0.0))
    full = torch.cat([prompt, model.generate(prompt, n, sample)], dim=2)
    end, start, slides, checked = T0 + 1, 0, 0, set()
    max_ctx, keep = block, max(block // 2, K + 1)
    for logits in seen:
        for k in range(K):
            frame = end - 1 - k  # the step after the context holds level k of this frame
            if T0 <= frame < T0 + n:
                window = full[:, :, start:end - 1]  # frames start .. end - 2: what positions < end - start hold
                expected = model(window)[:, k, frame - 1 - start]
                torch.testing.assert_close(logits[:, k], expected, atol=1e-5, rtol=1e-5)
                assert torch.equal(full[:, k, frame], expected.argmax(-1))
                checked.add((frame, k))
        end += 1
        if end - start > max_ctx:
            start, slides = end - keep, slides + 1
    assert slides >= 2 and len(checked) == n * K  # every generated code, on every level


def test_delay_generation_needs_room_to_slide():
    with pytest.raises(PianogenError, match="block_size > K \\+ 1"):
        tiny("delay", 4, block_size=5).generate(codes(1, 4, 3), 4, make_sampler(0.0))


def test_generate_restores_training_mode():
    model = tiny("multi_output", 2, dropout=0.1).train()
    model.generate(codes(1, 2, 3), 2, make_sampler(0.0))
    assert model.training


@pytest.mark.parametrize("name,K", MODELS)
def test_a_few_steps_reduce_nll(name, K):
    torch.manual_seed(0)
    model = tiny(name, K).train()
    loss_fn = pianogen.get_loss("nll")
    x = codes(4, K, 12)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        loss, _ = loss_fn(model(x)[:, :, :-1], x[:, :, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


@pytest.mark.parametrize("name,K", MODELS)
def test_flops_and_mfu_match_flop_counter_mode(name, K):
    """flops_per_token (6N + 12·L·H·Q·T) against PyTorch's own count of one forward + backward. Attention
    runs on the math kernel, whose matmuls FlopCounterMode sees (the fused CPU kernel counts 0). The
    formula's N also holds the LayerNorm gains (no matmul): under 1 % here; the attention term is ~7 %."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    model = tiny(name, K, bias=False)
    B, T = 2, 12
    steps = T + K if name == "delay" else T  # the delay model runs its special step and T + K - 1 delayed steps
    with FlopCounterMode(display=False) as counter, sdpa_kernel(SDPBackend.MATH):
        model(codes(B, K, T)).float().logsumexp(-1).sum().backward()
    counted = counter.get_total_flops()
    assert model.flops_per_token(steps) * B * steps == pytest.approx(counted, rel=0.01)
    mfu = model.estimate_mfu(fwdbwd_per_iter=B, dt=0.5, peak_flops=1e9, seq_len=steps)
    assert mfu == pytest.approx(counted / 0.5 / 1e9, rel=0.01)
