"""Probe for issue 15's RNN target: can a recurrent layer that runs every member at once
(weights stacked [K, ...], torch.bmm / baddbmm across members) reproduce torch's CPU
nn.RNN / nn.GRU / nn.LSTM bit-for-bit on packed variable-length batches, and is it faster?

It follows torch's CPU order (aten/src/ATen/native/RNN.cpp): the input projection of every
packed row first (addmm), then per step the hidden projection (addmm), the gate chunks and
their in-place adds and activations; a finished sequence keeps its state (torch.where) where
torch slices it off. Five measurements: the matmuls alone (bmm slices against mm, row-count
dependence, zero-padded contractions); the layer against nn.* (outputs, final states,
gradients and weights after SGD steps with dropout, 1 and 2 layers); the order in which
autograd sums a state's gradients; nn.* with oneDNN on and off; and the speed of K stacked
members against K solo layers (CPU time, one thread). What they show: the result file.

Run from the repository root:
    python -m benchmarks.fusion_rnn_probe [--members 16] [--write]
With --write it also saves benchmarks/results/fusion_rnn_probe.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

from benchmarks.learning_quality import machine

RESULT = Path(__file__).parent / "results" / "fusion_rnn_probe.md"
CELLS = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}
GATES = {"rnn": 1, "gru": 3, "lstm": 4}
NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
QUANTITIES = ("outputs", "final state", "gradients", "weights after SGD")
BATCH = 32  # the benchmark's batch size; sequence lengths: sentiment 12, translation 13
SHAPES = ((64, 12), (128, 13))  # (hidden, longest sequence) of benchmarks/fusion.py's RNNs
SMALL_ROWS = {1: 4, 2: 12}  # threads -> below this many rows a matmul goes member by member


class _Linear(torch.autograd.Function):
    """x (K, M, in) @ weight (K, out, in).T + bias, the first rows[k] rows of member k as
    torch.addmm computes them alone, with addmm's backward (grad.T @ x for the weight). Rows
    past rows[k] are scratch: their gradient must come back zero."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor, rows: list[int]) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.rows = rows
        out = torch.baddbmm(bias[:, None, :], x, weight.transpose(1, 2))
        for k, r in enumerate(rows):
            if 0 < r < SMALL_ROWS[torch.get_num_threads()]:
                out[k, :r] = torch.addmm(bias[k], x[k, :r], weight[k].t())
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, Tensor, None]:
        x, weight = ctx.saved_tensors
        rows = ctx.rows
        grad_x = torch.bmm(grad, weight)
        for k, r in enumerate(rows):
            if 0 < r < SMALL_ROWS[torch.get_num_threads()]:
                grad_x[k, :r] = torch.mm(grad[k, :r], weight[k])
        if x.shape[1] > 128:  # a contraction padded with zero rows rounds otherwise
            grad_w = torch.stack([torch.mm(grad[k, :r].t(), x[k, :r]) for k, r in enumerate(rows)])
        else:
            grad_w = torch.bmm(grad.transpose(1, 2), x)
        grad_b = torch.stack([grad[k, :r].sum(0) for k, r in enumerate(rows)])
        return grad_x, grad_w, grad_b, None


def _cell(cell: str, gi: Tensor, h: Tensor, c: Tensor | None, hh: Tensor) -> tuple[Tensor, Any]:
    """One step of every member: RNN.cpp's SimpleCell, GRUCell and LSTMCell, op for op."""
    if cell == "rnn":
        return torch.tanh(hh.add_(gi)), None
    if cell == "gru":
        ig, hg = gi.unsafe_chunk(3, 2), hh.unsafe_chunk(3, 2)
        reset = hg[0].add_(ig[0]).sigmoid_()
        update = hg[1].add_(ig[1]).sigmoid_()
        new = ig[2].add(hg[2].mul_(reset)).tanh_()
        return (h - new).mul_(update).add_(new), None
    gates = hh.add_(gi).unsafe_chunk(4, 2)
    i, f, g, o = gates[0].sigmoid_(), gates[1].sigmoid_(), gates[2].tanh_(), gates[3].sigmoid_()
    cy = (f * c).add_(i * g)
    return o * cy.tanh(), cy


def stacked_layer(
    cell: str, slab: Tensor, counts: list[int], sizes: list[Tensor], params: list[Tensor]
) -> tuple[Tensor, Tensor]:
    """One layer over every member's packed rows: slab (K, N, in) holds member k's counts[k]
    packed rows (time-major) first, then at least one padding row; sizes[k] is its packed
    batch sizes. Returns the packed outputs (K, N, hidden) and the final hidden state."""
    w_ih, w_hh, b_ih, b_hh = params
    members, n, hidden = slab.shape[0], slab.shape[1], w_hh.shape[2]
    steps, batch = max(len(s) for s in sizes), max(int(s[0]) for s in sizes)
    where = torch.full((members, steps, batch), n - 1, dtype=torch.long)  # the padding row
    for k, size in enumerate(sizes):
        starts = torch.cat([size.new_zeros(1), size.cumsum(0)[:-1]])
        for t, (start, rows) in enumerate(zip(starts.tolist(), size.tolist(), strict=True)):
            where[k, t, :rows] = torch.arange(start, start + rows)
    active = where != n - 1  # (K, steps, batch)
    gi = _Linear.apply(slab, w_ih, b_ih, counts)  # (K, N, gates * hidden)
    flat = (where + torch.arange(members)[:, None, None] * n).view(-1)
    gi = gi.flatten(0, 1).index_select(0, flat).view(members, steps, batch, -1)
    h = slab.new_zeros(members, batch, hidden)
    c = slab.new_zeros(members, batch, hidden) if cell == "lstm" else None
    outputs = []
    for t in range(steps):
        rows = [int(s[t]) if t < len(s) else 0 for s in sizes]
        new_h, new_c = _cell(cell, gi[:, t], h, c, _Linear.apply(h, w_hh, b_hh, rows))
        keep = active[:, t, :, None]
        h = torch.where(keep, new_h, h)
        c = torch.where(keep, new_c, c) if c is not None else None
        outputs.append(new_h)
    out = torch.stack(outputs, 1).flatten(0, 2)  # (K * steps * batch, hidden)
    back = torch.zeros(members, n, dtype=torch.long)  # packed row -> (step, row) position
    for k in range(members):
        positions = active[k].view(-1).nonzero().squeeze(1) + k * steps * batch
        back[k, : positions.numel()] = positions
        back[k, positions.numel() :] = k * steps * batch  # padding rows: gradient zero
    return out.index_select(0, back.view(-1)).view(members, n, hidden), h


def _batch(generator: torch.Generator, inputs: int, longest: int) -> PackedSequence:
    lengths = torch.randint(1, longest + 1, (BATCH,), generator=generator)
    lengths = lengths.sort(descending=True).values
    lengths[-3:] = 1  # the last steps run with one to three rows, as short sentences make them
    x = torch.randn(BATCH, longest, inputs, generator=generator)
    return pack_padded_sequence(x, lengths, batch_first=True)


def _slab(packs: list[PackedSequence]) -> tuple[Tensor, list[int]]:
    counts = [p.data.shape[0] for p in packs]
    slab = packs[0].data.new_zeros(len(packs), max(counts) + 1, packs[0].data.shape[1])
    for k, p in enumerate(packs):
        slab[k, : counts[k]] = p.data
    return slab, counts


def _diff(a: Tensor, b: Tensor) -> float:
    return float((a - b).abs().max())


def layer_check(
    cell: str, layers: int, hidden: int, longest: int, members: int = 4, steps: int = 3
) -> dict[str, float]:
    """Max abs difference of each quantity between the stacked layer and nn.* (0: equal),
    over `steps` SGD steps with dropout 0.2 between layers and a loss on outputs and states."""
    p, lr = 0.2, 0.5
    nets = []
    for k in range(members):
        torch.manual_seed(100 + k)
        nets.append(CELLS[cell](hidden, hidden, layers, batch_first=True, dropout=p * (layers > 1)))
    stacked = [
        [torch.stack([getattr(n, f"{name}_l{i}").detach() for n in nets]).requires_grad_()
         for name in NAMES]
        for i in range(layers)
    ]  # fmt: skip
    generators = [torch.Generator().manual_seed(500 + k) for k in range(members)]
    states = [g.get_state() for g in generators]  # each solo net's global generator state
    data = torch.Generator().manual_seed(7)
    worst: dict[str, float] = {}

    def note(name: str, a: Tensor, b: Tensor) -> None:
        worst[name] = max(worst.get(name, 0.0), _diff(a, b))

    for _ in range(steps):
        packs = [_batch(data, hidden, longest) for _ in range(members)]
        weights = [torch.randn(layers, BATCH, hidden, generator=data) for _ in range(members)]
        solo = []
        for k, net in enumerate(nets):
            torch.set_rng_state(states[k])
            out, state = net(packs[k])
            states[k] = torch.get_rng_state()
            h = state[0] if cell == "lstm" else state
            net.zero_grad()
            ((h * weights[k]).sum() + out.data.sum() * 0.5).backward()
            solo.append((h.detach(), out.data.detach()))
        slab, counts = _slab(packs)
        sizes = [pk.batch_sizes for pk in packs]
        finals = []
        for i in range(layers):
            slab, h = stacked_layer(cell, slab, counts, sizes, stacked[i])
            finals.append(h)
            if i < layers - 1 and p > 0:  # nn.* draws its between-layer dropout on packed rows
                keep = torch.ones_like(slab)
                for k, g in enumerate(generators):
                    mask = torch.empty(counts[k], hidden).bernoulli_(1 - p, generator=g)
                    keep[k, : counts[k]] = mask.div_(1 - p)
                slab = slab * keep
        states_k = torch.stack(finals, 1)  # (K, layers, batch, hidden)
        loss = sum(
            (states_k[k] * weights[k]).sum() + slab[k, : counts[k]].sum() * 0.5
            for k in range(members)
        )
        loss.backward()
        with torch.no_grad():
            for k, net in enumerate(nets):
                note("final state", states_k[k], solo[k][0])
                note("outputs", slab[k, : counts[k]], solo[k][1])
                for i in range(layers):
                    for name, param in zip(NAMES, stacked[i], strict=True):
                        solo_param = getattr(net, f"{name}_l{i}")
                        note("gradients", param.grad[k], solo_param.grad)
                        solo_param.add_(solo_param.grad, alpha=-lr)
                        param[k].add_(param.grad[k], alpha=-lr)
                        note("weights after SGD", param[k], solo_param)
            for row in stacked:
                for param in row:
                    param.grad = None
    return worst


def order_check(cell: str) -> list[tuple[str, str, float]]:
    """One member (no stacking): gradient max abs diff against nn.* with a loss on the final
    state only, or also on every step's output, for full-length and for shrinking batches.
    With the output term a step's state has three consumers (the output, the next step's
    matmul and, for the GRU, its `hidden - new`), and autograd's sum of their gradients takes
    the order torch's graph gives it, which depends on whether the batch shrinks there."""
    found = []
    generator = torch.Generator().manual_seed(5)
    for batches in ("full length", "shrinking"):
        for loss in ("final state", "final state + outputs"):
            torch.manual_seed(0)
            net = CELLS[cell](64, 64, 1, batch_first=True)
            pk = _batch(generator, 64, 12)
            if batches == "full length":
                lengths = torch.full((BATCH,), 12)
                pk = pack_padded_sequence(torch.randn(BATCH, 12, 64), lengths, batch_first=True)
            weight = torch.randn(BATCH, 64, generator=generator)
            out, state = net(pk)
            h = state[0] if cell == "lstm" else state
            ((h[0] * weight).sum() + out.data.sum() * 0.5 * (loss != "final state")).backward()
            slab, counts = _slab([pk])
            params = [
                getattr(net, f"{n}_l0").detach()[None].clone().requires_grad_() for n in NAMES
            ]
            packed, h = stacked_layer(cell, slab, counts, [pk.batch_sizes], params)
            (
                (h[0] * weight).sum() + packed[0, : counts[0]].sum() * 0.5 * (loss != "final state")
            ).backward()
            worst = max(
                _diff(p.grad[0], getattr(net, f"{n}_l0").grad)
                for p, n in zip(params, NAMES, strict=True)
            )
            found.append((batches, loss, worst))
    return found


def gemm_checks(members: int) -> list[tuple[str, str]]:
    """(check, finding) rows for the matmuls of a recurrent step and of its projection."""
    found = []
    generator = torch.Generator().manual_seed(0)
    for hidden, _ in SHAPES:
        for gates in (1, 3, 4):
            out = gates * hidden
            w = torch.randn(members, out, hidden, generator=generator) * 0.1
            b = torch.randn(members, out, generator=generator) * 0.1
            x = torch.randn(members, 416, hidden, generator=generator)
            g = torch.randn(members, 416, out, generator=generator)
            differ, worst = [], 0.0
            for m in range(1, 33):
                fused = torch.baddbmm(b[:, None], x[:, :m], w.transpose(1, 2))
                back = torch.bmm(g[:, :m], w)
                for k in range(members):
                    a = torch.addmm(b[k], x[k, :m], w[k].t())
                    c = torch.mm(g[k, :m], w[k])
                    if not (torch.equal(a, fused[k]) and torch.equal(c, back[k])):
                        differ.append(m)
                        worst = max(worst, _diff(a, fused[k]), _diff(c, back[k]))
                        break
            found.append((f"bmm slice vs mm, ({hidden}->{out}), rows 1-32",
                          _rows(sorted(set(differ)), worst)))  # fmt: skip
            full = torch.addmm(b[0], x[0, :32], w[0].t())
            alone = {m: torch.addmm(b[0], x[0, :m], w[0].t()) for m in range(1, 32)}
            rows = [m for m, a in alone.items() if not torch.equal(full[:m], a)]
            worst = max((_diff(full[:m], alone[m]) for m in rows), default=0.0)
            found.append((f"addmm of m rows vs the first m of 32, ({hidden}->{out})",
                          _rows(rows, worst)))  # fmt: skip
            padded = []
            worst = 0.0
            for m in (32, 100, 192, 200, 300, 415):
                zeroed = g[0].clone()
                zeroed[m:] = 0
                a, c = torch.mm(zeroed.t(), x[0]), torch.mm(g[0, :m].t(), x[0, :m])
                if not torch.equal(a, c):
                    padded.append(m)
                    worst = max(worst, _diff(a, c))
            found.append((f"weight grad over m rows + zero rows to 416, ({hidden}->{out})",
                          _rows(padded, worst, "m in (32, 100, 192, 200, 300, 415)")))  # fmt: skip
    return found


def alignment_check() -> list[tuple[int, str]]:
    """(input width, finding): addmm of member k's slice of a stack, which starts off a 64-byte
    boundary when the width is not a multiple of 16 floats, against a fresh copy of it (what a
    solo run multiplies), for 1-32 rows."""
    found = []
    generator = torch.Generator().manual_seed(2)
    for width in (18, 64, 81):
        weight = torch.randn(64, width, generator=generator)
        bias = torch.randn(64, generator=generator)
        rows = []
        for m in range(1, 33):
            x = torch.randn(4, m, width, generator=generator)
            alone = [torch.addmm(bias, x[k].clone(), weight.t()) for k in range(4)]
            if any(
                not torch.equal(torch.addmm(bias, x[k], weight.t()), alone[k]) for k in range(4)
            ):
                rows.append(m)
        found.append((width, _rows(rows, 0.0).split(" (max")[0]))
    return found


def _rows(rows: list[int], worst: float, tried: str = "") -> str:
    if not rows:
        return f"equal{' for ' + tried if tried else ''}"
    return f"differ at {rows} (max abs diff {worst:.2e})"


def onednn_check() -> list[tuple[str, float, float]]:
    """nn.* with oneDNN enabled against disabled (the native path that the layer follows):
    on unpacked float input, and on packed input with and without a shorter sequence."""
    found = []
    x = torch.randn(BATCH, 9, 64, generator=torch.Generator().manual_seed(1))
    equal, shorter = torch.full((BATCH,), 9), torch.tensor([9] * (BATCH - 1) + [8])
    inputs = {
        "unpacked": x,
        "packed, every length equal": pack_padded_sequence(x, equal, batch_first=True),
        "packed, one sequence shorter": pack_padded_sequence(x, shorter, batch_first=True),
    }
    for cell, kind in CELLS.items():
        for name, batch in inputs.items():
            torch.manual_seed(0)
            net = kind(64, 64, 2, batch_first=True)
            runs = []
            for enabled in (True, False):
                with torch.backends.mkldnn.flags(enabled=enabled):
                    net.zero_grad()
                    out = net(batch)[0]
                    out = out.data if isinstance(out, PackedSequence) else out
                    out.square().sum().backward()
                    runs.append((out.detach(), [p.grad.clone() for p in net.parameters()]))
            (out_on, grads_on), (out_off, grads_off) = runs
            grads = max(_diff(a, b) for a, b in zip(grads_on, grads_off, strict=True))
            found.append((f"{cell}, {name}", _diff(out_on, out_off), grads))
    return found


def _cpu_seconds(work: Callable[[], None], repeats: int = 3, calls: int = 4) -> float:
    work()
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        for _ in range(calls):
            work()
        best = min(best, (time.process_time() - started) / calls)
    return best


def speed(cell: str, hidden: int, longest: int, members: int, exact: bool) -> tuple[float, float]:
    """CPU seconds of one forward and backward of `members` solo nn.* layers, and of the
    stacked layer (exact: the probe's layer; else a plain stacked loop with autograd's bmm,
    every sequence full length: what no exactness machinery costs)."""
    nets = [CELLS[cell](hidden, hidden, 1, batch_first=True) for _ in range(members)]
    generator = torch.Generator().manual_seed(3)
    packs = [_batch(generator, hidden, longest) for _ in range(members)]
    if not exact:
        full = torch.full((BATCH,), longest)
        packs = [pack_padded_sequence(torch.randn(BATCH, longest, hidden), full, batch_first=True)
                 for _ in range(members)]  # fmt: skip
    params = [torch.stack([getattr(n, f"{name}_l0").detach() for n in nets]).requires_grad_()
              for name in NAMES]  # fmt: skip

    def solo() -> None:
        for net, pk in zip(nets, packs, strict=True):
            state = net(pk)[1]
            (state[0] if cell == "lstm" else state).sum().backward()

    def stacked() -> None:
        slab, counts = _slab(packs)
        if exact:
            stacked_layer(cell, slab, counts, [p.batch_sizes for p in packs], params)[
                1
            ].sum().backward()
            return
        w_ih, w_hh, b_ih, b_hh = params
        gi = torch.baddbmm(b_ih[:, None], slab[:, :-1], w_ih.transpose(1, 2))
        gi = gi.view(members, longest, BATCH, -1)
        h = slab.new_zeros(members, BATCH, hidden)
        c = slab.new_zeros(members, BATCH, hidden) if cell == "lstm" else None
        for t in range(longest):
            hh = torch.baddbmm(b_hh[:, None], h, w_hh.transpose(1, 2))
            h, c = _cell(cell, gi[:, t], h, c, hh)
        h.sum().backward()

    return _cpu_seconds(solo), _cpu_seconds(stacked)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=16)
    parser.add_argument("--write", action="store_true", help=f"also write {RESULT.name}")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    lines = [*machine("python -m benchmarks.fusion_rnn_probe " + " ".join(argv)), ""]

    def emit(*new: str) -> None:
        lines.extend(new)
        print("\n".join(new), flush=True)

    for threads in (1, 2):
        torch.set_num_threads(threads)
        emit(f"## Matmuls, {threads} thread{'s' * (threads > 1)}, {args.members} members", "",
             "| check | finding |", "|---|---|")  # fmt: skip
        emit(*(f"| {check} | {finding} |" for check, finding in gemm_checks(args.members)))
        emit(*(f"| addmm of a stack's slice vs a fresh copy, ({width}->64), rows 1-32 | {found} |"
               for width, found in alignment_check()))  # fmt: skip
        emit("", f"## Stacked layer against nn.* (packed, hidden {SHAPES[0][0]}, 4 members, "
             f"3 SGD steps), {threads} thread{'s' * (threads > 1)}", "",
             "| cell | layers | outputs | final state | gradients | weights after SGD |",
             "|---|---|---|---|---|---|")  # fmt: skip
        for cell in CELLS:
            for layers in (1, 2):
                worst = layer_check(cell, layers, *SHAPES[0])
                cells = " | ".join(
                    f"{worst[k]:.2e}" if worst[k] else "0 (equal)" for k in QUANTITIES
                )
                emit(f"| {cell} | {layers} | {cells} |")
        emit("")
    torch.set_num_threads(1)
    emit("## Gradient accumulation order: one member, hidden 64, 12 steps, 1 thread", "",
         "| cell | batches | loss on | gradients max abs diff |", "|---|---|---|---|")  # fmt: skip
    for cell in CELLS:
        emit(*(f"| {cell} | {batches} | {loss} | {worst:.2e} |"
               for batches, loss, worst in order_check(cell)))  # fmt: skip
    emit("")
    emit("## oneDNN: nn.* with oneDNN on against off (2 layers, hidden 64)", "")
    emit("| cell, input | outputs max abs diff | gradients max abs diff |", "|---|---|---|")
    emit(*(f"| {cell} | {out:.2e} | {grad:.2e} |" for cell, out, grad in onednn_check()))
    emit("", f"## Speed: {args.members} members, one forward and backward of one layer, batch "
         f"{BATCH}, CPU ms (1 thread)", "",
         "| cell | hidden | steps | layer | solo ms | stacked ms | speed-up |",
         "|---|---|---|---|---|---|---|")  # fmt: skip
    for hidden, longest in SHAPES:
        for cell in CELLS:
            for exact in (True, False):
                solo, fused = speed(cell, hidden, longest, args.members, exact)
                kind = "probe's (packed)" if exact else "plain stacked, no exactness (full length)"
                emit(f"| {cell} | {hidden} | {longest} | {kind} | {solo * 1e3:.1f} "
                     f"| {fused * 1e3:.1f} | {solo / fused:.2f}x |")  # fmt: skip
    if args.write:
        RESULT.write_text(
            "# Stacked recurrent layer against torch's CPU RNNs\n\n" + "\n".join(lines) + "\n"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
