"""The step pipeline at scale: batches prefetched in a thread, a few fixed shapes for a compiled step, and a
non-finite loss handled on the device (no host read per step) without ever updating the weights from it."""

import threading

import numpy as np
import pytest
import torch

from text2token import Text2TokenModel
from text2token.errors import Text2TokenError
from text2token.objectives import Objective, ObjectiveOutput, TokenKL
from text2token.training.batches import ROW_BUCKET, WIDTH_BUCKET, Batch, Collator, token_budget_schedule
from text2token.training.loop import Prefetcher, Trainee, train_loop

TEXTS = [
    "The cat sat on the mat.",
    "Stocks fell sharply after the bank raised interest rates.",
    "Hi there",
    "Volcanoes erupted, spreading ash across the villages below the mountain.",
    "A kitten slept.",
    "Engineers designed bridges that withstand strong earthquakes in the region.",
    "Rain again today.",
    "The orchestra rehearsed the symphony for the concert on Sunday evening.",
] * 3


def test_prefetcher_yields_in_order_and_raises_where_the_error_happened():
    made = []

    def make(i):
        made.append(threading.current_thread().name)
        if i == 3:
            raise ValueError("bad item 3")
        return i * i

    got = []
    with pytest.raises(ValueError, match="bad item 3"):
        for value in Prefetcher(make, range(6)):
            got.append(value)
    assert got == [0, 1, 4]
    assert set(made) == {"text2token-prefetch"}  # computed off the consumer's thread
    assert list(Prefetcher(lambda i: -i, range(5), depth=1)) == [0, -1, -2, -3, -4]


def test_prefetcher_stops_its_thread_when_the_consumer_stops_early():
    pf = Prefetcher(lambda i: i, range(1000), depth=2)
    for value in pf:
        if value == 2:
            break
    pf._thread.join(timeout=5)
    assert not pf._thread.is_alive()


@pytest.mark.parametrize("packed", [True, False])
def test_fixed_shapes_give_few_batch_shapes_and_the_same_loss(tiny_model_dir, tokenizer, packed):
    from text2token.targets import DataDrivenTargetBuilder

    model = Text2TokenModel.from_pretrained(str(tiny_model_dir), pooling="mean", device="cpu")
    model.eval()
    targets, _ = DataDrivenTargetBuilder(tokenizer, max_length=32).build(TEXTS)
    free, fixed = (Collator(model, TEXTS, targets.text_index, targets) for _ in range(2))
    fixed.fixed_shapes = True
    if packed:
        free.pack_length = fixed.pack_length = 48
        schedule = token_budget_schedule(free.token_lengths(), 120, 12, seed=0)
    else:
        rng = np.random.default_rng(0)
        schedule = [rng.choice(len(targets), size=6, replace=False) for _ in range(12)]  # batch_size rows
    shapes_free, shapes_fixed = set(), set()
    for rows in schedule:
        a, b = free(rows), fixed(rows)
        shapes_free.add(tuple(a.input_ids.shape))
        shapes_fixed.add(tuple(b.input_ids.shape))
        if packed:
            assert b.input_ids.shape[1] == 48 and b.input_ids.shape[0] % ROW_BUCKET == 0
        else:
            assert b.input_ids.shape[1] % WIDTH_BUCKET == 0
        assert b.num_tokens == a.num_tokens and np.array_equal(a.rows, b.rows)
        with torch.no_grad():
            la = TokenKL()([model(a.input_ids, a.attention_mask, a.position_ids, a.segment_ids)], a, model).loss
            lb = TokenKL()([model(b.input_ids, b.attention_mask, b.position_ids, b.segment_ids)], b, model).loss
        assert lb.item() == pytest.approx(la.item(), rel=1e-5)  # empty rows / extra padding change nothing
    assert len(shapes_fixed) <= 2 and len(shapes_fixed) < len(shapes_free), (shapes_fixed, shapes_free)


class _Linear(torch.nn.Module):
    """A stand-in for the embedding model in the loop: pooled = W·mean(one-hot ids)."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Linear(4, 3)

    def forward(self, input_ids, attention_mask, position_ids=None, segment_ids=None):
        return self.w(input_ids.float())


class _NaNAt(Objective):
    """Squared output; NaN at the given steps (counted by calls)."""

    def __init__(self, bad_steps):
        self.bad, self.calls = set(bad_steps), 0

    def __call__(self, views, batch, model):
        self.calls += 1
        loss = views[0].pow(2).mean()
        if self.calls in self.bad:
            loss = loss * float("nan")
        return ObjectiveOutput({"sq": loss}, {})


@pytest.mark.parametrize("check_every", [1, 4])
def test_a_nonfinite_loss_never_updates_the_weights(check_every):
    """Checked every step: stop at once. Deferred (as on a GPU): the fused optimizer skips that update on the
    device, later good steps go on, and the run stops at the next check, naming the count."""
    from accelerate import Accelerator

    torch.manual_seed(0)
    model = _Linear()
    params = list(model.parameters())
    optimizer = torch.optim.AdamW(params, lr=0.1, fused=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    trainee = Trainee(model, model, optimizer, scheduler, params, grad_clip=1.0, check_every=check_every)
    seen = []

    class Spy:
        def on_step(self, record, interrupted):
            seen.append((record.step, [p.detach().clone() for p in params]))

        def close(self):
            pass

    def collate(rows):
        x = torch.tensor(np.asarray(rows, dtype=np.int64)).reshape(1, 4)
        return Batch(rows=np.arange(1), input_ids=x, attention_mask=torch.ones_like(x))

    schedule = [np.array([1, 2, 3, 4])] * 8
    with pytest.raises(Text2TokenError, match="non-finite|nan"):
        train_loop(trainee, Accelerator(cpu=True), _NaNAt({3}), schedule, collate, "data", "stage 1", 0, 8, [Spy()])
    steps = [s for s, _ in seen]
    if check_every == 1:
        assert steps == [1, 2]  # stopped at step 3, before its update and before any callback saw it
    else:
        assert steps == [1, 2, 3] and 4 not in steps  # the check at step 4 stops the run
        before, at_bad = seen[1][1], seen[2][1]
        assert all(torch.equal(a, b) for a, b in zip(before, at_bad, strict=True)), "the NaN step changed weights"
        assert all(torch.isfinite(p).all() for p in params)
        assert optimizer.state[params[0]]["step"].item() == 3  # step 3 not counted (steps 1, 2, 4)


@pytest.mark.parametrize(
    "extra",
    [
        ["training.tokens_per_step=160"],
        ["training.tokens_per_step=160", "training.mixed_precision=bf16"],
        ["training.batch_size=8"],
    ],
)
def test_activation_checkpointing_gives_the_same_training(tmp_path, tiny_model_dir, extra):
    """Checkpointing recomputes activations in the backward: the same losses and adapter as without it, with packed
    rows, the bf16 frozen backbone and plain padded batches."""
    from helpers import stage1_losses, tiny_run_config

    from text2token.training import train

    runs = {}
    for ckpt in (False, True):
        folder = tmp_path / str(ckpt)
        folder.mkdir()
        train(
            tiny_run_config(
                folder,
                tiny_model_dir,
                "stage1.steps=3",
                "training.save_every=0",
                f"training.gradient_checkpointing={str(ckpt).lower()}",
                *extra,
            ),
            show_progress_bar=False,
        )
        runs[ckpt] = stage1_losses(folder / "run")
    assert len(runs[True]) == 3
    assert runs[True] == pytest.approx(runs[False], rel=1e-4)


def test_compiled_training_with_fixed_shapes_runs_and_matches(tmp_path, tiny_model_dir):
    """``training.compile`` (batches in fixed buckets) trains to the same losses as the eager step."""
    import shutil

    if not (shutil.which("c++") or shutil.which("g++")):  # torch.compile on a CPU builds C++ kernels
        pytest.skip("no C++ compiler for torch.compile's CPU backend")
    from helpers import stage1_losses, tiny_run_config

    from text2token.training import train

    runs = {}
    for compiled in (False, True):
        folder = tmp_path / str(compiled)
        folder.mkdir()
        train(
            tiny_run_config(
                folder,
                tiny_model_dir,
                "stage1.steps=2",
                "training.save_every=0",
                "training.tokens_per_step=160",
                f"training.compile={str(compiled).lower()}",
            ),
            show_progress_bar=False,
        )
        runs[compiled] = stage1_losses(folder / "run")
    assert runs[True] == pytest.approx(runs[False], rel=1e-3)
