"""Property tests for the flow-matching core: schedulers, paths and the Euler sampler."""
import math

import pytest
import torch

from drax.flow.elbo import trajectory_elbo
from drax.flow.gumbel import gumbel_softmax_sample
from drax.flow.noise import RowNoise, randint, uniform
from drax.flow.path import PATH_CHOICES, build_path
from drax.flow.sampler import ConfidenceOrder, EulerJumps, JacobiSteps
from drax.flow.scheduler import PolynomialScheduler, TriMixtureScheduler, build_scheduler

T_GRID = torch.linspace(0, 1, 1001, dtype=torch.float64)


@pytest.mark.parametrize("p,q", [(2.0, 2 / 3), (1.0, 1.0), (3.0, 0.5), (0.5, 2.0)])
def test_tri_kappas_are_a_distribution(p, q):
    k = TriMixtureScheduler(p, q).kappa(T_GRID)
    for part in (k.source, k.mid, k.target):
        assert (part >= -1e-12).all()
    torch.testing.assert_close(k.source + k.mid + k.target, torch.ones_like(T_GRID))
    assert k.source[0] == 1 and k.target[-1] == 1


@pytest.mark.parametrize("p,q", [(2.0, 2 / 3), (1.0, 1.0), (3.0, 0.5)])
def test_kappa_mid_peaks_at_t_star(p, q):
    sched = TriMixtureScheduler(p, q)
    t = torch.linspace(0, 1, 100001, dtype=torch.float64)
    t_peak = t[sched.kappa(t).mid.argmax()].item()
    assert t_peak == pytest.approx((q / (p + q)) ** (1 / p), abs=1e-4)
    assert TriMixtureScheduler().mid_peak == pytest.approx(0.5)


def test_derivatives_match_finite_differences():
    sched = TriMixtureScheduler()
    t = torch.linspace(0.05, 0.95, 50, dtype=torch.float64)
    eps = 1e-6
    hi, lo, k = sched.kappa(t + eps), sched.kappa(t - eps), sched.kappa(t)
    for name in ("source", "mid", "target"):
        fd = (getattr(hi, name) - getattr(lo, name)) / (2 * eps)
        torch.testing.assert_close(getattr(k, "d_" + name), fd, rtol=1e-5, atol=1e-6)


def test_rates_match_appendix_b_formula():
    """alpha_j = dkappa_j - kappa_j dkappa_0 / kappa_0 (closed forms in the scheduler)."""
    sched = TriMixtureScheduler()
    t = torch.linspace(0.05, 0.95, 50, dtype=torch.float64)
    k = sched.kappa(t)
    beta = k.d_source / k.source
    a1, amid = sched.rates(t)
    torch.testing.assert_close(a1, k.d_target - k.target * beta)
    torch.testing.assert_close(amid, k.d_mid - k.mid * beta)
    assert (a1 >= 0).all() and (amid >= 0).all()
    lin_a1, _ = PolynomialScheduler(1.0).rates(t)
    torch.testing.assert_close(lin_a1, 1 / (1 - t))


@pytest.mark.parametrize("t", [0.1, 0.5, 0.8])
def test_path_component_frequencies_match_kappa(t):
    """Empirical source / middle / target frequencies of x_t match kappa(t) (5-sigma bound)."""
    vocab, n = 50, 100_000
    path = build_path("audio_mid", vocab)
    x1 = torch.zeros(1, n, dtype=torch.long)  # target token 0
    # p_mid puts all its mass on token 1; the uniform source hits 0 or 1 with probability 1/vocab.
    pmid = torch.full((1, n, vocab), -1e4)
    pmid[..., 1] = 0.0
    g = torch.Generator().manual_seed(0)
    xt = path.sample(x1, torch.tensor([t]), pmid, generator=g).xt
    k = path.scheduler.kappa(torch.tensor([t], dtype=torch.float64))
    uniform_hit = 1 / vocab
    expected = {
        "target": k.target.item() + k.source.item() * uniform_hit,
        "mid": k.mid.item() + k.source.item() * uniform_hit,
    }
    for name, token in (("target", 0), ("mid", 1)):
        freq = (xt == token).double().mean().item()
        sigma = math.sqrt(expected[name] * (1 - expected[name]) / n)
        assert abs(freq - expected[name]) < 5 * sigma + 1e-9, (name, freq, expected[name])


def test_two_way_path_frequency_and_mask_source():
    n = 100_000
    path = build_path("mask", 50)
    xt = path.sample(torch.zeros(1, n, dtype=torch.long), torch.tensor([0.3]),
                     generator=torch.Generator().manual_seed(1)).xt
    assert set(xt.unique().tolist()) == {0, path.mask_id}
    freq = (xt == 0).double().mean().item()
    assert abs(freq - 0.3) < 5 * math.sqrt(0.21 / n)


def test_gumbel_softmax_routes_gradient_to_pmid_not_target():
    torch.manual_seed(0)
    vocab, length = 12, 64
    pmid_net = torch.nn.Linear(4, vocab)
    emb = torch.nn.Embedding(vocab + 1, 8)
    pmid_logits = pmid_net(torch.randn(1, length, 4))
    path = build_path("audio_mid", vocab)
    x1 = torch.randint(vocab, (1, length))
    s = path.sample(x1, torch.tensor([0.5]), pmid_logits)
    assert s.soft_delta is not None and s.soft_delta.abs().max() == 0  # forward value untouched
    h = emb(s.xt) + s.soft_delta @ emb.weight[:vocab]
    h.pow(2).sum().backward()
    assert pmid_net.weight.grad is not None and pmid_net.weight.grad.abs().sum() > 0
    assert not x1.requires_grad and x1.grad is None


def test_gumbel_softmax_samples_follow_softmax():
    logits = torch.tensor([[0.0, 1.0, 2.0]]).expand(100_000, 3).contiguous()
    ids, _ = gumbel_softmax_sample(logits, generator=torch.Generator().manual_seed(3))
    freq = torch.bincount(ids, minlength=3).double() / ids.numel()
    torch.testing.assert_close(freq, torch.softmax(logits[0].double(), 0), atol=0.01, rtol=0)


@pytest.mark.parametrize("nfe", [1, 2, 3, 7, 49])
def test_sampler_with_oracle_posterior_lands_on_target(nfe):
    vocab, b, length = 30, 8, 20
    g = torch.Generator().manual_seed(nfe)
    x1 = torch.randint(vocab, (b, length), generator=g)
    calls = []

    def oracle(x, t):
        calls.append(t[0].item())
        return torch.nn.functional.one_hot(x1, vocab).float() * 100

    x0 = torch.randint(vocab, (b, length), generator=g)
    out = EulerJumps(PolynomialScheduler(1.0), nfe, temperature=1.0).sample(oracle, x0, generator=g)
    assert torch.equal(out.tokens, x1)
    assert len(calls) == nfe
    assert calls == pytest.approx([k / nfe for k in range(nfe)])


def test_sampler_final_marginals_match_fixed_posterior():
    vocab, n = 5, 40_000
    probs = torch.tensor([0.5, 0.2, 0.15, 0.1, 0.05])
    logits = probs.log().expand(1, n, vocab)
    x0 = torch.randint(vocab, (1, n), generator=torch.Generator().manual_seed(0))
    out = EulerJumps(PolynomialScheduler(1.0), nfe=4, temperature=1.0).sample(
        lambda x, t: logits, x0, generator=torch.Generator().manual_seed(1))
    freq = torch.bincount(out.tokens.flatten(), minlength=vocab).double() / n
    bound = 5 * (probs * (1 - probs) / n).sqrt().double()
    assert ((freq - probs.double()).abs() < bound).all(), freq


def test_sampler_pins_prompt_and_records_trajectory():
    vocab, length = 10, 6
    x1 = torch.full((2, length), 3)
    x0 = torch.tensor([[7, 8, 0, 0, 0, 0], [7, 8, 1, 1, 1, 1]])
    pinned = torch.zeros_like(x0, dtype=torch.bool)
    pinned[:, :2] = True
    out = EulerJumps(PolynomialScheduler(1.0), 5).sample(
        lambda x, t: torch.nn.functional.one_hot(x1, vocab).float() * 50, x0, pinned, return_trajectory=True)
    assert out.tokens[:, :2].tolist() == [[7, 8], [7, 8]]
    assert (out.tokens[:, 2:] == 3).all()
    assert len(out.trajectory) == 5 and torch.equal(out.trajectory[0], x0)
    assert all(torch.equal(s[:, :2], x0[:, :2]) for s in out.trajectory)


def test_sampler_with_pmid_term_visits_pmid_and_lands_on_oracle():
    """x1 holds tokens 0-9, x0 tokens 10-14 and p_mid puts all its mass on token 19: an intermediate
    state holding 19 can only come from a jump to a p_mid draw (the velocity's alpha_mid term)."""
    vocab, length, mid = 20, 16, 19
    gen = torch.Generator().manual_seed(0)
    x1 = torch.randint(10, (3, length), generator=gen)
    x0 = torch.randint(10, 15, (3, length), generator=gen)
    pmid = torch.nn.functional.one_hot(torch.full((3, length), mid), vocab).float()
    out = EulerJumps(TriMixtureScheduler(), 8, pmid_probs=pmid).sample(
        lambda x, t: torch.nn.functional.one_hot(x1, vocab).float() * 50, x0, return_trajectory=True, generator=gen)
    assert torch.equal(out.tokens, x1) and len(out.trajectory) == 8
    assert any((state == mid).any() for state in out.trajectory[1:])
    without = EulerJumps(TriMixtureScheduler(), 8).sample(
        lambda x, t: torch.nn.functional.one_hot(x1, vocab).float() * 50, x0, return_trajectory=True, generator=gen)
    assert not any((state == mid).any() for state in without.trajectory)  # no p_mid term, no p_mid token


@pytest.mark.parametrize("bad", [{"p": 0}, {"q": -1.0}])
def test_bad_scheduler_parameters_name_the_key(bad):
    key = next(iter(bad))
    with pytest.raises(ValueError, match=f"scheduler_conf.{key} must be > 0"):
        build_scheduler("tri_mixture", **bad)


def test_unknown_names_list_valid_choices():
    with pytest.raises(ValueError, match="unknown path 'bogus'.*audio_mid"):
        build_path("bogus", 10)
    with pytest.raises(ValueError, match="unknown scheduler 'cosine'.*tri_mixture"):
        build_scheduler("cosine")
    with pytest.raises(ValueError, match="needs scheduler 'tri_mixture'"):
        build_path("audio_mid", 10, scheduler="polynomial")
    assert set(PATH_CHOICES) == {"uniform", "mask", "uniform_mid", "audio_mid", "mask_mid", "audio_src"}


def test_trajectory_elbo_is_zero_for_a_certain_posterior_and_negative_otherwise():
    vocab, b, length, nfe = 12, 4, 9, 6
    g = torch.Generator().manual_seed(0)
    x1 = torch.randint(vocab, (b, length), generator=g)
    free = torch.ones(b, length, dtype=torch.bool)
    free[:, :2] = False
    oracle = lambda x, t: torch.nn.functional.one_hot(x1, vocab).float() * 100  # noqa: E731
    out = EulerJumps(PolynomialScheduler(1.0), nfe).sample(
        oracle, torch.randint(vocab, (b, length), generator=g), return_trajectory=True, generator=g)
    assert torch.equal(out.tokens, x1)
    elbo = trajectory_elbo(oracle, out.trajectory, out.times, x1, free)
    assert elbo.abs().max() < 1e-6
    noisy = lambda x, t: torch.randn(b, length, vocab, generator=g)  # noqa: E731
    assert (trajectory_elbo(noisy, out.trajectory, out.times, x1, free) < 0).all()


def test_trajectory_elbo_matches_the_formula_and_ranks_by_posterior_likelihood():
    vocab, length = 6, 5
    logits = torch.randn(1, length, vocab, generator=torch.Generator().manual_seed(3))
    logp = logits.log_softmax(-1)[0]
    fixed = lambda x, t: logits.expand(x.shape[0], -1, -1)  # noqa: E731
    source = torch.zeros(1, length, dtype=torch.long)
    likely = logp.argmax(-1)[None]
    unlikely = logp.argmin(-1)[None]
    times = [0.0, 0.5]
    free = torch.ones(1, length, dtype=torch.bool)
    # step 0 visits the source, step 1 the candidate itself; rates 1/(1-t) = 1 and 2, h = 1/2
    elbo = trajectory_elbo(fixed, [source, likely], times, likely, free)
    pos = torch.arange(length)
    at_source = torch.where(source[0] == likely[0], 1 - logp[pos, likely[0]].exp(),
                            -logp[pos, likely[0]] - logp[pos, 0].exp())
    expected = -0.5 * 1.0 * at_source.sum() - 0.5 * 2.0 * (1 - logp[pos, likely[0]].exp()).sum()
    assert elbo.item() == pytest.approx(expected.item(), rel=1e-3)  # rates clamp t away from 0 and 1
    both = torch.cat([likely, unlikely])
    traj = [source.expand(2, -1), source.expand(2, -1)]
    scores = trajectory_elbo(fixed, traj, times, both, free.expand(2, -1))
    assert scores[0] > scores[1]
    with pytest.raises(ValueError, match="two-way"):
        trajectory_elbo(fixed, traj, times, both, free.expand(2, -1), TriMixtureScheduler())


@pytest.mark.parametrize("exponent", [1.0, 2.0])
def test_confidence_order_decides_the_most_confident_first_on_schedule(exponent):
    vocab, b, length, nfe = 12, 3, 10, 4
    g = torch.Generator().manual_seed(0)
    x0 = torch.full((b, length), vocab - 1)  # a token the posterior never proposes
    pinned = torch.zeros(b, length, dtype=torch.bool)
    pinned[:, :2] = True
    pinned[2, 7:] = True  # a shorter canvas
    # the posterior's confidence falls with the position: the order of decisions is left to right
    target = torch.arange(length).expand(b, -1) % vocab
    strength = torch.linspace(9, 1, length)

    def posterior(x, t):
        return torch.nn.functional.one_hot(target, vocab).float() * strength[None, :, None]

    scheduler = PolynomialScheduler(exponent)
    out = ConfidenceOrder(scheduler, nfe, temperature=1e-4).sample(posterior, x0, pinned, g, return_trajectory=True)
    assert torch.equal(out.tokens[pinned], x0[pinned]) and torch.equal(out.tokens[~pinned], target[~pinned])
    free = (~pinned).sum(1)
    for k, state in enumerate(out.trajectory[1:], start=1):
        decided = (state != x0) & ~pinned
        want = (free * float(scheduler.kappa(torch.tensor(k / nfe)).target)).round().long()
        assert decided.sum(1).tolist() == want.tolist()
        for row in range(b):  # the most confident free positions (the leftmost) went first
            cols = (~pinned[row]).nonzero().flatten()
            assert decided[row, cols[: want[row]]].all() and not decided[row, cols[want[row]:]].any()


def test_jacobi_order_with_a_causal_posterior_converges_to_greedy_left_to_right():
    """The prediction of position j is a function of the tokens before it (a causal denoiser, read at
    t = 1): after k Jacobi steps the first k free positions equal greedy left-to-right decoding, and
    after as many steps as free positions all of them do."""
    vocab, b, length, prompt = 7, 4, 9, 2
    torch.manual_seed(0)
    table = torch.randn(vocab, vocab, vocab)  # next-token logits from the two tokens before

    times = []

    def posterior(x, t):
        times.append(t)
        prev1 = torch.cat([x[:, :1], x[:, :-1]], 1)
        prev2 = torch.cat([x[:, :2], x[:, :-2]], 1)
        return table[prev2, prev1]

    x0 = torch.randint(vocab, (b, length), generator=torch.Generator().manual_seed(1))
    pinned = torch.zeros(b, length, dtype=torch.bool)
    pinned[:, :prompt] = True
    greedy = x0.clone()
    for j in range(prompt, length):
        greedy[:, j] = posterior(greedy, None)[:, j].argmax(-1)
    for nfe in (1, 3, length - prompt):
        times.clear()
        out = JacobiSteps(nfe, temperature=1e-6).sample(posterior, x0, pinned)
        assert torch.equal(out.tokens[:, :prompt + nfe], greedy[:, :prompt + nfe]), nfe
        assert all(bool((t == 1.0).all()) for t in times) and len(times) == out.steps == nfe
    assert torch.equal(out.tokens, greedy)
    # given more steps than it needs, it stops once a step changes nothing: one step after the last change
    times.clear()
    out = JacobiSteps(10 * length, temperature=1e-6).sample(posterior, x0, pinned)
    assert torch.equal(out.tokens, greedy) and len(times) == out.steps <= length - prompt + 1
    start = greedy.clone()
    start[:, -1] = (greedy[:, -1] + 1) % vocab  # one step from the fixed point
    out = JacobiSteps(10 * length, temperature=1e-6).sample(posterior, start, pinned)
    assert torch.equal(out.tokens, greedy) and out.steps == 2
    assert EulerJumps(PolynomialScheduler(1.0), 5, temperature=1.0).sample(posterior, x0, pinned).steps == 5  # all
    times.clear()  # read at another time: every call at that t (the same causal fixed point here)
    out = JacobiSteps(10 * length, temperature=1e-6, read_time=0.7).sample(posterior, x0, pinned)
    assert torch.equal(out.tokens, greedy) and all(bool((t == 0.7).all()) for t in times)

    # what follows the first end token is no part of the transcript: noise there does not keep it going
    end, noise = 7, torch.Generator().manual_seed(3)

    def count_to_end(x, t):  # causal: the token after v is v + 1, up to the end token; noise after it
        after_end = (x == end).int().cumsum(1) > 0
        logits = 20.0 * torch.nn.functional.one_hot((x + 1).clamp(max=end), end + 1).float()
        noisy = 10 * torch.randn(logits.shape, generator=noise)
        logits = torch.where(after_end[..., None], noisy, logits)
        return torch.cat([logits[:, :1], logits[:, :-1]], 1)  # position j reads j - 1

    starts = torch.tensor([[0, 1], [2, 3], [4, 5], [1, 5]])
    x0 = torch.cat([starts, torch.randint(end, (4, 10), generator=noise)], 1)
    pinned = torch.zeros_like(x0, dtype=torch.bool)
    pinned[:, :2] = True
    ends = [2 + end - 1 - int(row[1]) for row in starts]  # where each row's end token lands
    out = JacobiSteps(100, temperature=1e-6, end_token=end).sample(count_to_end, x0, pinned)
    assert out.steps == max(e - 2 for e in ends) + 2  # one step per token of the longest row, one to see it settle
    for row, e in enumerate(ends):
        assert out.tokens[row, 2: e + 1].tolist() == list(range(int(starts[row, 1]) + 1, end + 1)), row
    assert JacobiSteps(30, temperature=1e-6).sample(count_to_end, x0, pinned).steps == 30
    # told the denoiser is causal, steps evaluate only up to one past the furthest first end token:
    # the same transcripts, each step on fewer positions once the rows have ended
    widths = []

    def measured(x, t):
        widths.append(x.shape[1])
        return count_to_end(x, t)

    noise.manual_seed(3)
    cropped = JacobiSteps(100, temperature=1e-6, end_token=end, causal=True).sample(measured, x0, pinned)
    for row, e in enumerate(ends):
        assert torch.equal(cropped.tokens[row, : e + 1], out.tokens[row, : e + 1]), row
    assert (cropped.tokens[:, max(ends) + 2:] == end).all()  # never evaluated: the end token
    assert widths[0] == x0.shape[1] and widths[-1] == max(ends) + 2 < x0.shape[1]


def test_a_jacobi_window_settles_the_same_greedy_decoding_from_the_first_position_that_can_change():
    """A causal denoiser (the logits of position j read the tokens before j, here an end token ends a
    row): with a window of w positions a jacobi step re-predicts positions [first that can change,
    + w) only, keeps the rest, and reaches the same fixed point; cut short by nfe, its last step
    re-predicts every position."""
    vocab, end, b, length, prompt = 9, 8, 5, 16, 2
    torch.manual_seed(29)  # rows that end after 2 to 9 tokens
    table = torch.randn(vocab, vocab, vocab) * 3  # next-token logits from the two tokens before
    table[..., end] -= 1.5

    calls = []

    def posterior(x, t):
        calls.append(x.clone())
        prev1 = torch.cat([x[:, :1], x[:, :-1]], 1)
        prev2 = torch.cat([x[:, :2], x[:, :-2]], 1)
        return table[prev2, prev1]

    x0 = torch.randint(end, (b, length), generator=torch.Generator().manual_seed(1))  # no end token yet
    pinned = torch.zeros(b, length, dtype=torch.bool)
    pinned[:, :prompt] = True
    kwargs = dict(temperature=1e-6, end_token=end, causal=True)
    full = JacobiSteps(100, **kwargs).sample(posterior, x0, pinned)
    first_end = [int((row == end).int().argmax()) if (row == end).any() else length for row in full.tokens]
    assert max(first_end) < length - 2 and len(set(first_end)) > 2, first_end  # rows of different lengths
    for window in (1, 2, 3, 5):
        calls.clear()
        out = JacobiSteps(100, window=window, **kwargs).sample(posterior, x0, pinned, return_trajectory=True)
        for row, e in enumerate(first_end):
            assert torch.equal(out.tokens[row, : e + 1], full.tokens[row, : e + 1]), (window, row)
        final = prompt  # positions before it hold their final tokens
        states = out.trajectory + [out.tokens]
        for call, before, after in zip(calls, states, states[1:]):
            assert call.shape[1] <= final + window  # a step re-predicts at most `window` positions
            rest = slice(call.shape[1], None)  # kept, or the end token beyond the rows' reach
            assert ((after[:, rest] == before[:, rest]) | (after[:, rest] == end)).all()
            assert torch.equal(after[:, :final], full.tokens[:, :final])
            changed = (after != before).any(0)
            final = min(call.shape[1], int(changed.int().argmax()) + 1) if changed.any() else call.shape[1]
        assert out.steps == len(calls) <= max(first_end) - prompt + 2  # at least one position settled per step
    # one step short of the end: the last step re-predicts the whole reach from the settled prefix
    calls.clear()
    cut = JacobiSteps(3, window=1, **kwargs).sample(posterior, x0, pinned)
    assert [c.shape[1] for c in calls][:2] == [prompt + 1, prompt + 2] and calls[-1].shape[1] == length
    assert torch.equal(cut.tokens[:, : prompt + 3], full.tokens[:, : prompt + 3])
    for bad in (dict(causal=False), dict(end_token=None)):
        with pytest.raises(ValueError, match="window 2: a jacobi step's window needs the jacobi order"):
            JacobiSteps(4, window=2, **{**kwargs, **bad})


def test_row_noise_draws_belong_to_the_utterance_not_to_its_batch():
    def noise(utts, step=3):
        return RowNoise.for_utterances(0, utts, step, width=12)

    pair, alone = noise(["a", "b"]), noise(["b"])
    # row "b" draws the same whether or not "a" shares its batch, and however wide the canvas is
    torch.testing.assert_close(uniform((2, 9), pair, canvas_dims=(1,))[1], uniform((1, 9), alone, canvas_dims=(1,))[0])
    wide, narrow = noise(["b"]), noise(["b"])
    torch.testing.assert_close(uniform((1, 4, 12), wide, canvas_dims=(1, 2))[..., :4, :7],
                               uniform((1, 4, 7), narrow, canvas_dims=(1, 2)))
    # the streams differ between utterances, steps and seeds, and repeat for the same key
    first = uniform((3, 6), noise(["a", "b", "a"]), canvas_dims=(1,))
    assert torch.equal(first[0], first[2]) and not torch.equal(first[0], first[1])
    assert not torch.equal(uniform((1, 6), noise(["a"], step=4), canvas_dims=(1,))[0], first[0])
    assert not torch.equal(uniform((1, 6), RowNoise.for_utterances(1, ["a"], 3, 12), canvas_dims=(1,))[0], first[0])
    # integers cover [0, high) evenly; a canvas wider than the width is an error
    ids = randint(5, (1, 12), noise(["c"]), canvas_dims=(1,))
    counts = torch.bincount(randint(5, (200, 12), noise([str(i) for i in range(200)]), canvas_dims=(1,)).flatten(), minlength=5)
    assert ids.min() >= 0 and ids.max() < 5 and counts.min() > 0.18 * 2400 and counts.max() < 0.22 * 2400
    with pytest.raises(ValueError, match="exceeds the canvas width 12"):
        uniform((1, 13), noise(["a"]), canvas_dims=(1,))
    with pytest.raises(ValueError, match="2 rows, asked for a draw of shape"):
        uniform((3,), pair)
    # without row streams, torch's generators draw as torch.rand does
    seeded = torch.rand(4, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(uniform((4,), torch.Generator().manual_seed(5)), seeded)


@pytest.mark.parametrize("scheduler", [TriMixtureScheduler(), TriMixtureScheduler(3.0, 0.5), PolynomialScheduler(1.0),
                                       PolynomialScheduler(2.0)])
def test_time_of_target_inverts_kappa_1(scheduler):
    fraction = torch.linspace(0, 1, 11)
    torch.testing.assert_close(scheduler.kappa(scheduler.time_of_target(fraction)).target, fraction)
