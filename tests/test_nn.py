"""The torch core: modules, optimizer, engine, losses; and its independence from scikit-learn."""

import ast
import math
import os
import pathlib
import subprocess
import sys
import warnings

import pytest
import torch
import torch.nn.functional as F

from sk_deepunsup._nn import (
    MLP,
    FlatAdam,
    NonFiniteLossError,
    Trainer,
    TrainingInterrupted,
    build_autoencoder,
    kl_clustering_loss,
    reconstruction_objective,
    student_t_assignment,
    target_distribution,
)

CORE = pathlib.Path(__file__).parents[1] / "sk_deepunsup" / "_nn"


def test_core_never_imports_sklearn():
    files = sorted(CORE.glob("*.py"))
    assert files
    for path in files:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            assert not any(n.split(".")[0] == "sklearn" for n in names), path.name


def test_flat_adam_matches_torch_adam():
    gen = torch.Generator().manual_seed(0)
    a = build_autoencoder(6, 2, (5, 4), generator=gen)
    b = build_autoencoder(6, 2, (5, 4), generator=gen)
    b.load_state_dict(a.state_dict())
    ref = torch.optim.Adam(a.parameters(), lr=1e-2)
    flat = FlatAdam(b.parameters(), lr=1e-2)
    x = torch.randn(32, 6, generator=gen)
    for _ in range(25):
        ref.zero_grad()
        F.mse_loss(a(x), x).backward()
        ref.step()
        flat.zero_grad()
        F.mse_loss(b(x), x).backward()
        flat.step()
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6)


def test_flat_adam_l2_touches_weights_only():
    lin = torch.nn.Linear(3, 2)
    with torch.no_grad():
        lin.weight.fill_(1.0)
        lin.bias.fill_(1.0)
    opt = FlatAdam(lin.parameters(), lr=0.1, weight_decay=1.0)
    opt.zero_grad()  # zero loss gradient: only the L2 term moves parameters
    opt.step()
    assert torch.all(lin.weight < 1.0)
    assert torch.all(lin.bias == 1.0)


def test_module_construction_leaves_global_rng_alone():
    before = torch.random.get_rng_state()
    MLP([4, 8, 2], dropout=0.5, batch_norm=True, generator=torch.Generator().manual_seed(1))
    assert torch.equal(before, torch.random.get_rng_state())


def test_module_construction_has_no_one_off_import():
    # building from the meta device must not go through torch.empty_like's
    # Python reference, which imports sympy (half a second in each process)
    code = (
        "import sys\n"
        "import torch\n"
        "from sk_deepunsup._nn import MLP\n"
        "from sk_deepunsup._nn.conv import ConvEncoder\n"
        "mlp = MLP([4, 8, 2], batch_norm=True)\n"
        "assert all(p.device.type == 'cpu' for p in mlp.parameters())\n"
        "assert mlp.norms[0].running_var.eq(1).all()\n"
        "ConvEncoder((1, 8, 8), (4,), (16,), 2, batch_norm=True)\n"
        "print('sympy' in sys.modules)\n"
    )
    root = str(pathlib.Path(__file__).resolve().parents[1])
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": root}, check=True,
    )
    assert out.stdout.strip() == "False"


def test_mlp_is_reproducible_from_generator():
    a = MLP([4, 8, 2], generator=torch.Generator().manual_seed(3))
    b = MLP([4, 8, 2], generator=torch.Generator().manual_seed(3))
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


def test_mlp_rejects_unknown_activation():
    with pytest.raises(ValueError, match="activation must be one of"):
        MLP([3, 2], activation="swish")


def _toy_trainer(**kw):
    gen = torch.Generator().manual_seed(0)
    module = build_autoencoder(4, 2, (8,), generator=gen)
    x = torch.randn(64, 4, generator=gen)
    params = dict(batch_size=16, max_iter=50, generator=gen)
    params.update(kw)
    return Trainer(module, reconstruction_objective(), **params), x


def test_trainer_reduces_loss_and_records_history():
    trainer, x = _toy_trainer()
    history = trainer.fit((x,))
    assert history.n_iter == len(history.loss) > 1
    assert history.loss[-1] < history.loss[0]
    assert history.n_steps == history.n_iter * 4


def test_trainer_stops_on_tol():
    trainer, x = _toy_trainer(tol=1e9, n_iter_no_change=3)
    history = trainer.fit((x,))
    # the first epoch always improves on +inf; three more without improvement
    assert history.converged and history.n_iter == 4


def test_trainer_early_stopping_restores_best_weights():
    trainer, x = _toy_trainer(max_iter=15)
    history = trainer.fit((x[:48],), (x[48:],))
    assert len(history.validation_loss) == history.n_iter
    assert math.isclose(trainer.evaluate((x[48:],)), min(history.validation_loss), rel_tol=1e-5)


def test_trainer_non_finite_loss_rolls_back():
    trainer, x = _toy_trainer(learning_rate=1e30)
    before = [p.detach().clone() for p in trainer.module.parameters()]
    with pytest.raises(NonFiniteLossError, match="learning_rate_init"):
        trainer.fit((x * 1e30,))
    for p, q in zip(trainer.module.parameters(), before):
        assert torch.isfinite(p).all()
        assert torch.equal(p, q)


def test_trainer_keyboard_interrupt_restores_best():
    trainer, x = _toy_trainer(max_iter=100)
    calls = {"n": 0}
    step = trainer.batch_step

    def interrupting_step(batch):
        calls["n"] += 1
        if calls["n"] == 4 * 6 + 2:  # during the 7th epoch
            raise KeyboardInterrupt
        return step(batch)

    trainer.batch_step = interrupting_step
    with pytest.warns(TrainingInterrupted, match="best epoch were restored"):
        history = trainer.fit((x,))
    assert history.interrupted and history.n_iter == 6
    trainer.module.eval()
    with torch.no_grad():
        loss = float(F.mse_loss(trainer.module(x), x))
    # restored weights are those of the best epoch, not the half-run 7th
    assert loss <= min(history.loss) * 1.05


def test_dec_maths():
    z = torch.tensor([[0.0, 0.0], [10.0, 10.0], [0.1, 0.0]])
    centers = torch.tensor([[0.0, 0.0], [10.0, 10.0]])
    q = student_t_assignment(z, centers, alpha=1.0)
    torch.testing.assert_close(q.sum(1), torch.ones(3))
    assert q[0, 0] > 0.99 and q[1, 1] > 0.99
    p = target_distribution(q)
    torch.testing.assert_close(p.sum(1), torch.ones(3))
    assert p[2, 0] > q[2, 0]  # sharper than q
    assert float(kl_clustering_loss(q, q)) == pytest.approx(0.0, abs=1e-6)
    assert float(kl_clustering_loss(p, q)) > 0


def test_no_warning_when_training_completes():
    trainer, x = _toy_trainer(max_iter=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trainer.fit((x,))


def _grads(module, x, use_fused, twice=False):
    module.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_(True)
    if use_fused:
        out = module(x)
        if twice:
            out = out + module(x * 0.5)
    else:
        out = _plain_forward(module, x)
        if twice:
            out = out + _plain_forward(module, x * 0.5)
    out.square().sum().backward()
    return [p.grad.clone() for p in module.parameters()] + [x.grad.clone()]


def _plain_forward(module, x):
    """The reference: plain autograd through F.linear."""
    last = len(module.linears) - 1
    for i, lin in enumerate(module.linears):
        x = F.linear(x, lin.weight, lin.bias)
        if i < last:
            x = module._act(x)
    return x


@pytest.mark.parametrize("activation", ["relu", "tanh", "logistic", "identity"])
@pytest.mark.parametrize("twice", [False, True])
def test_fused_mlp_gradients_match_autograd(activation, twice):
    module = MLP([5, 7, 6, 3], activation=activation, generator=torch.Generator().manual_seed(0))
    module.double()
    assert module.fusable
    x = torch.randn(9, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    fused = _grads(module, x, use_fused=True, twice=twice)
    plain = _grads(module, x, use_fused=False, twice=twice)
    for a, b in zip(fused, plain):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_fused_mlp_passes_gradcheck():
    module = MLP([4, 6, 2], activation="tanh", generator=torch.Generator().manual_seed(0)).double()
    x = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(module, (x,))


def test_mlp_with_batch_norm_or_dropout_uses_plain_autograd():
    assert not MLP([4, 6, 2], batch_norm=True).fusable
    assert not MLP([4, 6, 2], dropout=0.1).fusable
    assert not MLP([4, 6, 2], activation="gelu").fusable


# -- thread policy ------------------------------------------------------------------


def test_thread_policy_keeps_the_faster_count_and_restores_the_setting(monkeypatch):
    import sk_deepunsup._nn.threads as threads
    from sk_deepunsup._nn import ThreadPolicy

    clock = {"t": 0.0}  # a fake clock: a step takes 1 unit on one thread, 8 on two
    monkeypatch.setattr(threads.time, "perf_counter", lambda: clock["t"])
    before = torch.get_num_threads()
    policy = ThreadPolicy("adaptive", max_threads=2, probe_steps=2, remeasure_seconds=60,
                          hold_steps=100)
    seen = []
    with policy:
        assert policy.candidates == [1, 2]
        for _ in range(10):
            with policy.step():
                n = torch.get_num_threads()
                seen.append(n)
                clock["t"] += 1.0 if n == 1 else 8.0
    assert seen[:4] == [1, 2, 1, 2]  # interleaved measurement
    assert policy.chosen == 1 and set(seen[4:]) == {1}
    assert torch.get_num_threads() == before
    # the choice holds for max(remeasure_seconds, hold_steps steps of it) = 100
    clock["t"] += 60.0
    with policy, policy.step():
        assert policy._schedule == []  # still holding
    clock["t"] += 40.0
    with policy, policy.step():
        assert torch.get_num_threads() == 1  # first probe step of the new round
    assert policy._schedule == [2, 1, 2]


def test_fixed_thread_count_is_used_and_restored(monkeypatch):
    import sk_deepunsup._nn.threads as threads
    from sk_deepunsup._nn import ThreadPolicy

    monkeypatch.setattr(threads, "usable_cores", lambda: 4)  # a count the machine allows
    before = torch.get_num_threads()
    with ThreadPolicy(3) as policy:
        assert not policy.adaptive
        with policy.step():
            assert torch.get_num_threads() == 3
    assert torch.get_num_threads() == before


def test_trainer_restores_thread_setting_even_on_error():
    module = MLP([4, 3])
    x = torch.randn(20, 4)
    before = torch.get_num_threads()

    def failing(m, xb):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        Trainer(module, failing, n_threads=2, max_iter=1).fit((x,))
    assert torch.get_num_threads() == before


def test_default_thread_rule_counts_the_network_not_the_clock(monkeypatch):
    import sk_deepunsup._nn.threads as threads
    from sk_deepunsup._nn import ThreadPolicy

    # a clock that would make any timing-based choice flip between steps
    ticks = iter(range(10**6))
    monkeypatch.setattr(threads.time, "perf_counter", lambda: float(next(ticks)) ** 2)
    small, large = MLP([8, 16, 4]), MLP([512, 2048, 2048, 512])
    for module, expected in [(small, 1), (large, 2)]:
        seen = []
        with ThreadPolicy(None, module=module, rows=256, max_threads=2) as policy:
            for _ in range(4):
                with policy.step():
                    seen.append(torch.get_num_threads())
        assert seen == [expected] * 4


def test_thread_rule_macs():
    from sk_deepunsup._nn.threads import MACS_PER_THREAD, threads_for, weight_macs

    assert weight_macs(MLP([8, 16, 4])) == 8 * 16 + 16 * 4
    assert threads_for(MACS_PER_THREAD / 3 - 1, training=True, cap=4) == 1
    assert threads_for(MACS_PER_THREAD / 3 + 1, training=True, cap=4) == 2
    assert threads_for(2 * MACS_PER_THREAD, training=True, cap=4) == 4
    assert threads_for(2 * MACS_PER_THREAD, training=False, cap=4) == 2


def test_thread_rule_counts_convolutions_at_every_output_position():
    from sk_deepunsup._nn import ThreadPolicy, VAEModule
    from sk_deepunsup._nn.conv import build_conv_autoencoder
    from sk_deepunsup._nn.threads import sample_macs, weight_macs

    # 8x8 images, channels (4, 8): conv 1->4 (4x4 kernel) to 4x4, conv 4->8 to 2x2,
    # a dense layer 32->3, and the mirror image
    ae = build_conv_autoencoder((1, 8, 8), 3, channels=(4, 8))
    conv = 16 * 4 * 16 + 4 * 8 * 16 * 4  # kernel size x output positions
    dense = 32 * 3
    expected = 2 * (conv + dense)
    assert sample_macs(ae, 64) == expected
    assert weight_macs(ae) < expected
    vae = build_conv_autoencoder((1, 8, 8), 3, channels=(4, 8), encoder_outputs=2)
    vae = VAEModule(vae.encoder, vae.decoder, 64)  # no forward: posterior mean, then decoder
    assert sample_macs(vae, 64) == expected + 32 * 3
    # a width the network cannot take falls back to the weights' sizes
    assert sample_macs(ae, 10) == weight_macs(ae)
    # dense networks: the weights' sizes, as before
    assert sample_macs(MLP([64, 500, 500, 10]), 64) == weight_macs(MLP([64, 500, 500, 10]))
    # the count changes nothing: same weights, same training flags, same generator
    ae.train()
    before = [p.clone() for p in ae.parameters()]
    state = torch.get_rng_state()
    sample_macs(ae, 64)
    assert ae.training and all(m.training for m in ae.modules())
    assert all(torch.equal(a, b) for a, b in zip(before, ae.parameters()))
    assert torch.equal(state, torch.get_rng_state())
    # a 28x28 conv autoencoder at batch 64 gets two threads (its weights alone said one)
    big = build_conv_autoencoder((1, 28, 28), 10)
    with ThreadPolicy(None, module=big, rows=64, n_features=784, max_threads=2) as policy:
        assert policy.chosen == 2
    with ThreadPolicy(None, module=big, rows=64, max_threads=2) as policy:
        assert policy.chosen == 1


def test_concurrent_policies_restore_the_callers_setting(monkeypatch):
    import threading

    import sk_deepunsup._nn.threads as threads
    from sk_deepunsup._nn import ThreadPolicy

    monkeypatch.setattr(threads, "usable_cores", lambda: 4)  # 3 threads are allowed

    before = torch.get_num_threads()
    started, release = threading.Barrier(2), threading.Event()

    def run(n):
        with ThreadPolicy(n) as policy:
            with policy.step():
                pass
            started.wait(timeout=10)
            release.wait(timeout=10)
        # each leaves in turn; the last one out restores the caller's setting

    workers = [threading.Thread(target=run, args=(n,)) for n in (1, 3)]
    for w in workers:
        w.start()
    release.set()
    for w in workers:
        w.join(timeout=10)
    assert torch.get_num_threads() == before
