"""Neuron compartments of the bit-exact simulator: Loihi's CUBA LIF and the readout accumulator.

The arithmetic is ``spikec.target.fixedpoint`` (Lava 0.10's ``fixed_pt`` models); this module only
orders it into the chip's phases and keeps the state. ``CubaLIFLayer.step`` is the executable spec:
int64, one helper call per phase, in the order of Lava's ``PyLifModelBitAcc.run_spk``:

1. receive ``a_in`` (Lava's in-port adds the int32 messages of every connected synapse; a value
   beyond int16 is *not* truncated: Lava's port buffer is int16 but ``zeros(int16) + int32``
   promotes to int32, checked against Lava itself),
2. current ``u <- wrap_u(decay(u, du + 1) + (a_in << 6))`` (24-bit single-period wrap),
3. voltage ``v <- clip(decay(v, dv) + u + (bias_mant << bias_exp))`` (symmetric 24-bit clip),
4. threshold ``s <- v > (vth << 6)``,
5. reset ``v <- 0 where s`` (u is not reset), or the soft reset ``v <- v - v_subtract where s``
   of a ``cuba_lif`` with ``v_subtract`` (spikec's own Lava process model; it cannot leave the
   24-bit range: a spiking ``v`` exceeds ``vth << 6 >= 0``).

``CubaLIFLayer.run`` advances all T steps of a layer. It uses a *fast path* that computes the same
integers in a float carrier and falls back to ``step`` for any step where that is not provably
exact (see ``_fast_step``); ``fast=False`` runs ``step`` everywhere. A layer whose current has no
memory (``du = 4095``, Spikformer's LIFs) and whose ranges are proven for the whole run takes a
shorter fast path still (``_run_memoryless``: no current state, no range tests, no clip, the
input terms of all T steps in one pass), and where numba is installed (``pip install
spikec[fast]``) runs it as one compiled loop over the neurons, all T steps per element
(``memoryless_loop``; ``SPIKEC_SIM_NUMBA=0`` keeps numpy). Tests check every path against
``fixedpoint.lif_step``.
"""
from __future__ import annotations

import numpy as np

from spikec.errors import StateOverflowError
from spikec.ir.fixed import CubaLIF, Readout
from spikec.sim import jit
from spikec.sim.grid import GridSums
from spikec.target import fixedpoint as fx
from spikec.target.formats import NumberFormats


def overflow(layer: str, quantity: str, t: int, values: np.ndarray, ok: np.ndarray,
             limit: str) -> StateOverflowError:
    """A ``StateOverflowError`` naming layer, quantity, time step, sample and neuron index.

    ``values``/``ok`` are [B, *neuron shape]: the first offending element is reported.
    """
    bad = np.argwhere(~np.broadcast_to(ok, values.shape))
    first = tuple(int(i) for i in bad[0])
    return StateOverflowError(
        f"layer {layer!r}: {quantity} out of range at time step {t}, sample {first[0]}, neuron "
        f"{first[1:]} (value {int(values[first])}, limit {limit}; {len(bad)} element(s) this step); "
        "lower the layer's scale, or simulate without strict mode to get the chip's wrapped result")


def _memoryless_kernel(dtype: np.dtype):
    """The compiled loop of ``CubaLIFLayer._run_memoryless`` for the carrier ``dtype`` (numba,
    through ``spikec.sim.jit``), or None where numba is not installed or ``SPIKEC_SIM_NUMBA=0``.
    Compiled on first use, once per input dtype and layout (cached on disk where the package
    directory is writable)."""
    loop = _LOOPS.get(np.dtype(dtype))
    return None if loop is None else jit.kernel(loop)


def memoryless_loop(carrier):
    """All T steps of a memoryless LIF, element by element, in ``carrier`` (float32 or float64):
    the loop numba compiles (as plain Python it computes the same, slowly).

    The loop's arguments: ``a`` [T, B, N] integers in any dtype; ``scale`` (64), ``decay``
    (``factor_v / 4096``) carrier scalars; ``bias``, ``thr``, ``sub`` [N] in the carrier; ``soft``;
    ``v`` [B, N] carrier zeros, left holding the final voltage; ``out`` [T, B, N] bool receives
    the spikes. The arithmetic is ``CubaLIFLayer._run_memoryless``'s."""
    def loop(a, scale, decay, bias, thr, sub, soft, v, out):
        T, B, N = a.shape
        for t in range(T):
            for b in range(B):
                for n in range(N):
                    x = np.trunc(v[b, n] * decay) + (carrier(a[t, b, n]) * scale + bias[n])
                    s = x > thr[n]
                    out[t, b, n] = s
                    if s:
                        x = x - sub[n] if soft else carrier(0)
                    v[b, n] = x
    return loop


def memoryless_grid_loop(carrier):
    """``memoryless_loop`` over a synapse's GEMM output as it lands (``spikec.sim.grid``): channel by
    channel, in runs of one sample's grid of ``G`` positions, the input shifted by its channel's
    exponent while it is read (``(y << left[o]) >> right[o]``, the integer the output pass would
    make: ``linalg._nchw_loop``), the spikes written on the same grid.

    ``y`` int32 [O, T' B G] with ``T' = T`` (``tstride`` 1) or 1 (``tstride`` 0: one step repeated);
    ``left``, ``right`` int32 [O]; ``bias``, ``thr``, ``sub`` [O, G] in the carrier; ``v`` [O, B,
    G] carrier zeros, left holding the final voltage; ``out`` [O, T, B, G] bool. Grid positions
    outside the op's outputs compute values nobody reads (their sums obey the same bounds)."""
    def loop(y, T, B, tstride, G, left, right, scale, decay, bias, thr, sub, soft, v, out):
        O = y.shape[0]
        for o in range(O):
            lo = left[o]
            ro = right[o]
            bi, th, su = bias[o], thr[o], sub[o]
            for t in range(T):
                for b in range(B):
                    src = (t * tstride * B + b) * G
                    yr = y[o, src:src + G]
                    vr = v[o, b]
                    orow = out[o, t, b]
                    for g in range(G):
                        a = carrier((yr[g] << lo) >> ro)
                        x = np.trunc(vr[g] * decay) + (a * scale + bi[g])
                        s = x > th[g]
                        orow[g] = s
                        if s:
                            x = x - su[g] if soft else carrier(0)
                        vr[g] = x
    return loop


def memoryless_channel_loop(carrier):
    """``memoryless_grid_loop`` for a layer whose bias, threshold and reset are the same for every
    neuron of a channel (Spikformer's): per channel and step one run over the grids of all B
    samples (``y``'s ``B G`` positions are consecutive), scalars for the constants. ``bias``,
    ``thr``, ``sub`` [O] in the carrier; ``v`` [O, B G]; ``out`` [O, T, B G]."""
    def loop(y, T, B, tstride, G, left, right, scale, decay, bias, thr, sub, soft, v, out):
        O = y.shape[0]
        n = B * G
        for o in range(O):
            lo = left[o]
            ro = right[o]
            bi = bias[o]
            th = thr[o]
            su = sub[o]
            vr = v[o]
            for t in range(T):
                src = t * tstride * n
                yr = y[o, src:src + n]
                orow = out[o, t]
                for k in range(n):
                    a = carrier((yr[k] << lo) >> ro)
                    x = np.trunc(vr[k] * decay) + (a * scale + bi)
                    s = x > th
                    orow[k] = s
                    if s:
                        x = x - su if soft else carrier(0)
                    vr[k] = x
    return loop


#: The loops of each carrier as plain Python (what ``jit.kernel`` compiles).
_LOOPS = {np.dtype(c): memoryless_loop(c) for c in (np.float32, np.float64)}
_GRID_LOOPS = {np.dtype(c): memoryless_grid_loop(c) for c in (np.float32, np.float64)}
_CHANNEL_LOOPS = {np.dtype(c): memoryless_channel_loop(c) for c in (np.float32, np.float64)}


def _pow2_or_zero(n: int) -> bool:
    return n == 0 or (n > 0 and n & (n - 1) == 0)


class CubaLIFLayer:
    """State and parameters of one ``cuba_lif`` op over a batch.

    Parameters
    ----------
    op : CubaLIF
    fmt : NumberFormats of the target (Lava arithmetic).
    strict : raise ``StateOverflowError`` where the chip would wrap ``u``, saturate ``v`` or receive
        an ``a_in`` wider than ``fmt.a_in_bits``.
    fast : allow the float fast path (bit-identical; see ``_fast_step``).
    """

    def __init__(self, op: CubaLIF, fmt: NumberFormats, *, strict: bool = False, fast: bool = True):
        fx.check_lif_params(op.du, op.dv, op.vth, op.bias_mant, op.bias_exp, fmt, op.name)
        self.name, self.fmt, self.strict = op.name, fmt, strict
        self.du, self.dv = int(op.du), int(op.dv)
        self.vth = np.asarray(op.vth, dtype=np.int64)
        self.bias_mant = np.asarray(op.bias_mant, dtype=np.int64)
        self.bias_exp = np.asarray(op.bias_exp, dtype=np.int64)
        self.bias = fx.effective_bias(self.bias_mant, self.bias_exp, fmt)        # int64 [shape]
        self.threshold = fx.effective_threshold(self.vth, fmt)                  # int64 [shape]
        self.v_subtract = None if op.v_subtract is None else \
            np.asarray(op.v_subtract, dtype=np.int64)                           # soft reset
        # fast-path constants: decay factors (4096 - d - offset) as exact fractions of 2**12
        self.factor_u = fmt.decay_unity - (self.du + fmt.u_decay_offset)
        self.factor_v = fmt.decay_unity - (self.dv + fmt.v_decay_offset)
        exact32 = _pow2_or_zero(self.factor_u) and _pow2_or_zero(self.factor_v)
        self.dtype = np.dtype(np.float32 if exact32 else np.float64)
        self.fast = fast
        # the same constants in the fast path's carrier (exact: |bias| < 2**20, vth << 6 < 2**23)
        b = self.bias
        self._bias_f = self._in_carrier(b) if b.any() else None
        self._threshold_f = self._in_carrier(self.threshold)
        self._bias_max = int(np.abs(b).max()) if b.size else 0
        self._sub_f = None if self.v_subtract is None else self._in_carrier(self.v_subtract)
        self._state: dict = {}        # u, v: arrays, or thunks that compute them on first read
        self._per_neuron = None       # bias, threshold, v_subtract in the carrier, [N] (compiled path)
        self._grid_constants: dict = {}   # shifts and constants on a synapse's grid (``_run_grid``)
        self._u_in_range = self._v_in_range = False      # set per run (``_range_proofs``)
        self.exact_steps = 0          # steps the fast path handed to ``step`` (diagnostics)

    # final state: ``run`` may leave a thunk that computes it only if it is read (the engine never
    # reads it); assigning replaces the value or the thunk
    @property
    def u(self):
        """The current ``u`` after the last step (integers, int64 or the fast carrier; ``None``
        before any step)."""
        return self._settle("u")

    @u.setter
    def u(self, value):
        self._state["u"] = value

    @property
    def v(self):
        """The voltage ``v`` after the last step, reset included (as ``u``)."""
        return self._settle("v")

    @v.setter
    def v(self, value):
        self._state["v"] = value

    def _settle(self, name: str):
        x = self._state.get(name)
        if callable(x):
            x = self._state[name] = x()
        return x

    def _in_carrier(self, x: np.ndarray):
        """A per-neuron integer constant in the fast path's carrier: one scalar where every
        neuron has the same value (cheaper to broadcast), else the array."""
        if x.size and (x == x.flat[0]).all():
            return self.dtype.type(x.flat[0])
        return x.astype(self.dtype)

    # ------------------------------------------------------------------ the chip's phases (int64)
    def reset_state(self, batch_shape: tuple[int, ...]) -> None:
        """u = v = 0 for every neuron (Lava's initial state)."""
        self.u = np.zeros(batch_shape, dtype=np.int64)
        self.v = np.zeros(batch_shape, dtype=np.int64)

    def step(self, a_in: np.ndarray, t: int) -> np.ndarray:
        """One time step, phase by phase, int64 (the reference). Returns spikes (bool)."""
        fmt = self.fmt
        u, v = self.u.astype(np.int64, copy=False), self.v.astype(np.int64, copy=False)
        # 1. synaptic input: the int32 sum of the messages that arrived (not truncated to int16)
        a_in = fx.wrap_signed(np.asarray(a_in).astype(np.int64), fmt.container_bits)
        if self.strict:
            ok = fx.fits_signed(a_in, fmt.a_in_bits)
            if not ok.all():
                raise overflow(self.name, f"synaptic input a_in (int{fmt.a_in_bits})", t, a_in, ok,
                               f"[{fmt.a_in_min}, {fmt.a_in_max}]")
        # 2. current: decay with the (du + 1) offset, add the MSB-aligned input, 24-bit wrap
        u_sum = fx.wrap_signed(fx.decay_current(u, self.du, fmt) + fx.synaptic_input(a_in, fmt),
                               fmt.container_bits)
        if self.strict:
            ok = fx.fits_signed(u_sum, fmt.state_bits, symmetric=True)
            if not ok.all():
                raise overflow(self.name, f"current u ({fmt.state_bits}-bit, would wrap)", t, u_sum,
                               ok, f"+-{fmt.state_max}")
        u = fx.wrap_current(u_sum, fmt)
        # 3. voltage: decay, add current and bias, symmetric 24-bit clip
        v_sum = fx.wrap_signed(fx.decay_voltage(v, self.dv, fmt) + u + self.bias, fmt.container_bits)
        if self.strict:
            ok = fx.fits_signed(v_sum, fmt.state_bits, symmetric=True)
            if not ok.all():
                raise overflow(self.name, f"voltage v ({fmt.state_bits}-bit, would saturate)", t,
                               v_sum, ok, f"+-{fmt.state_max}")
        v = fx.clip_signed(v_sum, fmt.state_bits, symmetric=True)
        # 4. threshold: strictly greater than vth << 6
        spikes = v > self.threshold
        # 5. reset: v = 0 (or v - v_subtract) where the neuron fired
        v = np.where(spikes, 0 if self.v_subtract is None else v - self.v_subtract, v)
        self.u, self.v = u, v
        return spikes

    # ------------------------------------------------------------------ all steps of a layer
    def run(self, a_in: np.ndarray, bound: int | None = None) -> np.ndarray:
        """Advance T steps. ``a_in`` [T, B, *shape] integers in any carrier; returns the spikes,
        bool [T, B, *shape]. Afterwards ``u``, ``v`` hold the final state (integers, possibly in
        the fast path's float carrier; ``_run_memoryless`` computes them when first read, ``u``
        from ``a_in``: change ``a_in`` only after reading ``u``). ``bound``: a static bound on
        ``|a_in|`` (the engine's ``BOUNDS``), which may spare the fast path's passes over
        ``a_in`` for its range proofs."""
        if isinstance(a_in, GridSums):
            spikes = self._run_grid(a_in, bound)
            if spikes is not None:
                return spikes
            a_in = a_in.materialize()
        T, shape = a_in.shape[0], a_in.shape[1:]
        fast = self.fast
        if fast:
            self._u_in_range, self._v_in_range = self._range_proofs(a_in, bound)
            if T and self._v_in_range and not (self.strict and self._a_in_too_wide(a_in)):
                return self._run_memoryless(a_in)
        out = np.empty(a_in.shape, dtype=bool)
        if fast:        # the int64 state is made only if a step falls back to ``step``
            u, v = np.zeros(shape, self.dtype), np.zeros(shape, self.dtype)
            u_next, v_next = np.empty(shape, self.dtype), np.empty(shape, self.dtype)
        else:
            self.reset_state(shape)
        # out[t] holds "no spike" (the fast path's keep mask) until the one negation at the end
        for t in range(T):
            if fast:
                if self._fast_step(u, v, a_in[t], u_next, v_next, out[t], rest=t == 0):
                    u, u_next, v, v_next = u_next, u, v_next, v
                    continue
                # not provably exact this step: redo it in int64 from the last exact state
                self.u, self.v = u.astype(np.int64), v.astype(np.int64)
                fast = False
            np.logical_not(self.step(a_in[t], t), out=out[t])
            self.exact_steps += 1
            if self.fast and self._fits_fast(self.u) and self._fits_fast(self.v):
                u, v = self.u.astype(self.dtype), self.v.astype(self.dtype)
                u_next, v_next = np.empty_like(u), np.empty_like(v)
                fast = True
        if fast:
            self.u, self.v = u, v
        return np.logical_not(out, out=out)

    def _a_in_too_wide(self, a_in: np.ndarray) -> bool:
        """Whether some ``a_in`` leaves ``fmt.a_in_bits`` (strict mode raises there)."""
        fmt = self.fmt
        return bool(a_in.size) and (a_in.max() > fmt.a_in_max or a_in.min() < fmt.a_in_min)

    def _run_memoryless(self, a_in: np.ndarray) -> np.ndarray:
        """``run`` for a current without memory whose ranges ``_range_proofs`` proved: the spikes,
        bool [T, B, *shape]. The final state is computed only if it is read (the engine never
        reads it): ``v`` from private buffers, ``u = a_{T-1} << 6`` from ``a_in``, which the caller
        must not change before.

        Then ``u_t = a_t << 6`` (``factor_u = 0``, no wrap: ``|u_t| <= state_max``) and
        ``v_t = decay(reset(v_{t-1})) + c_t`` with ``c_t = (a_t << 6) + bias`` and no clip (the
        voltage proof bounds every sum by ``state_max``). One buffer ``v`` [T, B, *shape] in the
        carrier first holds every ``c_t``, made in two passes over all steps; step t then adds the
        decayed, reset ``v_{t-1}`` into ``v[t]`` in place, so ``v[t]`` is step t's voltage before
        its reset. Per step: the reset of ``v[t-1]``, its decay (multiply and ``trunc``, none for
        ``factor_v = 4096``), one add, one comparison. The decay may overwrite ``v[t-1]``: no later
        step reads it.

        Exactness: ``|a_t << 6| <= state_max < 2**23`` and ``|bias| < 2**20``, so ``c_t`` (below
        2**24 in magnitude) is exact in float32, and the cast of an integer ``a_t`` with
        ``|a_t| <= 2**17`` to the carrier is exact; each voltage is an integer of magnitude <=
        ``state_max``, so every sum is exact and equals ``step``'s unclipped, unwrapped value.
        The decay and the reset are ``_fast_step``'s (exact by the argument there). Where numba
        is available the same values come from one compiled loop (``_run_compiled``).
        """
        kernel = _memoryless_kernel(self.dtype)
        if kernel is not None:
            return self._run_compiled(kernel, a_in)
        fmt, dt = self.fmt, self.dtype
        T = a_in.shape[0]
        v = np.empty(a_in.shape, dt)
        np.multiply(a_in, dt.type(1 << fmt.weight_shift), out=v, dtype=dt, casting="unsafe")
        if self._bias_f is not None:
            v += self._bias_f
        # keep[t]: "no spike" at step t, negated once at the end; the last step's mask apart, as
        # the final state's reset reads it
        keep = np.empty(a_in.shape, dtype=bool)
        keep_last = np.empty(a_in.shape[1:], dtype=bool)
        thr = self._threshold_f
        f_v = self.factor_v
        decay = None if f_v == fmt.decay_unity else dt.type(f_v / fmt.decay_unity)
        for t in range(T):
            if t:
                prev = v[t - 1]
                self._reset(prev, keep[t - 1])
                if decay is not None:
                    prev *= decay
                    np.trunc(prev, out=prev)
                v[t] += prev
            np.less_equal(v[t], thr, out=keep[t] if t < T - 1 else keep_last)
        v_last = v[T - 1]
        self._state = {"u": self._last_current(a_in), "v": lambda: self._reset(v_last, keep_last)}
        np.logical_not(keep[:T - 1], out=keep[:T - 1])
        np.logical_not(keep_last, out=keep[T - 1])
        return keep

    def _run_compiled(self, kernel, a_in: np.ndarray) -> np.ndarray:
        """``_run_memoryless`` as one compiled loop (``memoryless_loop``): per element, all T
        steps in registers, so ``a_in`` is read once and the spikes written once. The values,
        the carrier and so the exactness argument are ``_run_memoryless``'s."""
        fmt, dt = self.fmt, self.dtype
        T, B = a_in.shape[:2]
        a = a_in.reshape(T, B, -1)                  # a view for the layouts the engine makes
        if a.dtype.kind not in "iuf":
            a = a.astype(np.int64)
        if self._per_neuron is None:
            def flat(x):
                return np.ascontiguousarray(np.broadcast_to(x, self.threshold.shape),
                                            dtype=dt).reshape(-1)
            self._per_neuron = (flat(self.bias), flat(self.threshold),
                                flat(0 if self.v_subtract is None else self.v_subtract))
        v = np.zeros(a.shape[1:], dt)
        out = np.empty(a_in.shape, dtype=bool)      # owns its data: the engine keeps it as is
        kernel(a, dt.type(1 << fmt.weight_shift), dt.type(self.factor_v / fmt.decay_unity),
               *self._per_neuron, self.v_subtract is not None, v, out.reshape(a.shape))
        self._state = {"u": self._last_current(a_in), "v": v.reshape(a_in.shape[1:])}
        return out

    def _run_grid(self, a_in: GridSums, bound: int | None) -> np.ndarray | None:
        """``_run_compiled`` over a synapse's GEMM output as it lands (``memoryless_grid_loop``):
        the spikes as a view ``[T, B, *shape]`` of spikes on the grid. None where that path does
        not apply (no numba, strict mode, a current with memory, ranges not proven by the static
        ``bound``): the caller materializes the input. The values, the carrier and so the
        exactness argument are ``_run_memoryless``'s."""
        if not self.fast or self.strict or self.factor_u or bound is None or not a_in.steps:
            return None
        if not jit.enabled() or not all(self._proofs_from(int(bound))):
            return None
        self._u_in_range = self._v_in_range = True
        fmt, dt = self.fmt, self.dtype
        key = (a_in.key, a_in.grid, a_in.crop)
        consts = self._grid_constants.get(key)
        if consts is None:
            consts = self._grid_constants[key] = self._on_grid(a_in)
        loops, left, right, bias, thr, sub = consts
        kernel = jit.kernel(loops[dt])
        o, (hs, r) = len(left), a_in.grid
        T, B = a_in.steps, a_in.batch
        v = np.zeros((o, B, hs * r), dt)
        out = np.empty((o, T, B, hs * r), dtype=bool)
        kernel(a_in.y, T, B, 0 if a_in.repeated else 1, hs * r, left, right,
               dt.type(1 << fmt.weight_shift), dt.type(self.factor_v / fmt.decay_unity), bias, thr,
               sub, self.v_subtract is not None, v.reshape(o, -1) if bias.ndim == 1 else v,
               out.reshape(o, T, -1) if bias.ndim == 1 else out)
        self._state = {"u": lambda: self._last_current(a_in.materialize())(),
                       "v": a_in.grid_state(v)}
        return a_in.spikes(out)

    def _on_grid(self, a_in: GridSums) -> tuple:
        """``(loops, left, right, bias, thr, sub)`` of ``_run_grid`` for ``a_in``'s grid: the
        per-channel loop and [O] constants where every channel's neurons share bias, threshold
        and reset, else the per-position loop and [O, Hs R] constants."""
        dt = self.dtype
        s = np.asarray(a_in.shift, dtype=np.int32)
        o = a_in.sample_shape[0]
        per_neuron = [np.broadcast_to(x, a_in.sample_shape).reshape(o, -1) for x in
                      (self.bias, self.threshold,
                       0 if self.v_subtract is None else self.v_subtract)]
        if all((x == x[:, :1]).all() for x in per_neuron):
            return (_CHANNEL_LOOPS, np.maximum(s, 0), np.maximum(-s, 0),
                    *(np.ascontiguousarray(x[:, 0], dtype=dt) for x in per_neuron))
        return (_GRID_LOOPS, np.maximum(s, 0), np.maximum(-s, 0),
                *(a_in.on_grid(x.reshape(a_in.sample_shape), dt) for x in per_neuron))

    def _last_current(self, a_in: np.ndarray):
        """A thunk of the final current of a memoryless layer, ``u = a_{T-1} << 6`` in the
        carrier (made only if ``u`` is read)."""
        a_last, dt = a_in[-1], self.dtype
        return lambda: np.multiply(a_last, dt.type(1 << self.fmt.weight_shift), dtype=dt,
                                   casting="unsafe")

    def _reset(self, v: np.ndarray, keep: np.ndarray) -> np.ndarray:
        """Phase 5 in the fast carrier, in place: ``v <- 0`` (or ``v - v_subtract``) where not
        ``keep``. Multiplies by ``keep`` (a masked store is ten times slower where the mask is
        mixed; it may leave -0.0, which equals 0); the soft reset is exact: both integers below
        2**23 in magnitude, the difference too."""
        if self._sub_f is None:
            v *= keep
        else:
            v -= self._sub_f * np.logical_not(keep)
        return v

    def _range_proofs(self, a_in: np.ndarray, bound: int | None = None) -> tuple[bool, bool]:
        """From the static ``bound`` on ``|a_in|`` where it suffices, else from the largest
        ``|a_in|`` of all T steps (two passes instead of two per step): whether every current
        ``u`` lies in ``+-state_max`` and whether every voltage sum does (so ``_fast_step`` need
        neither test ``u`` nor clip ``v``). Only for a current without memory (``du = 4095``:
        ``u = a_in << 6``); then ``|v_new| <= |v| * f_v / 4096 + |u| + |bias|`` with ``|v| <=
        state_max``."""
        if self.factor_u or not a_in.size:
            return False, False
        if bound is not None:
            proofs = self._proofs_from(int(bound))
            if all(proofs):
                return proofs
        return self._proofs_from(max(int(a_in.max()), -int(a_in.min())))

    def _proofs_from(self, a_max: int) -> tuple[bool, bool]:
        """``_range_proofs`` for ``|a_in| <= a_max``."""
        fmt = self.fmt
        lim = fmt.state_max
        u_max = a_max << fmt.weight_shift
        u_ok = u_max <= lim
        return u_ok, u_ok and lim * self.factor_v // fmt.decay_unity + u_max + self._bias_max <= lim

    def _fits_fast(self, x: np.ndarray) -> bool:
        lim = self.fmt.state_max
        return x.size == 0 or (int(x.max()) <= lim and int(x.min()) >= -lim)

    def _fast_step(self, u, v, a_in, u_new, v_new, keep, rest: bool = False) -> bool:
        """The same step in a float carrier, into the buffers ``u_new``, ``v_new``, ``keep`` (no
        spike); False (buffers undefined) where it might differ from ``step``. ``rest``: u and v
        are 0 (the first step), so their decays are skipped (they are 0).

        Exactness: u and v hold integers of magnitude <= 2**23 - 1. A decay factor f/4096 that is 0
        or a power of two scales exactly in float32; any other f makes ``u * f`` an integer below
        2**36, exact in float64 (``self.dtype`` is chosen so), and ``trunc`` of the exact quotient
        is the sign-magnitude shift. ``a_in * 64`` is exact (a power of two). A sum whose exact value
        exceeds 2**24 in magnitude may round, but stays >= 2**24 in magnitude, so every test below
        against 2**23 - 1 gives the exact answer; a current outside +-(2**23 - 1) (where Lava would
        wrap, possibly after an int32 wrap of ``a_in << 6``) returns False, and so does any
        strict-mode violation, so that ``step`` redoes it (and raises). The reset is ``_reset``'s
        with ``keep = v <= threshold``. ``keep`` is written into the caller's buffer: the
        spikes are its negation, which ``run`` takes once for all steps.
        """
        fmt, dt = self.fmt, self.dtype
        lim = fmt.state_max
        if self.strict and self._a_in_too_wide(a_in):
            return False
        # 2. current (v_new is scratch until phase 3); a_in converted to the carrier while read
        np.multiply(a_in, dt.type(1 << fmt.weight_shift), out=u_new, dtype=dt, casting="unsafe")
        if self.factor_u and not rest:
            np.multiply(u, dt.type(self.factor_u / fmt.decay_unity), out=v_new)
            np.trunc(v_new, out=v_new)
            u_new += v_new
        if not self._u_in_range and u_new.size and (u_new.max() > lim or u_new.min() < -lim):
            return False
        # 3. voltage
        if rest:
            np.add(u_new, self._bias_f if self._bias_f is not None else 0, out=v_new)
        else:
            if self.factor_v == fmt.decay_unity:
                np.add(v, u_new, out=v_new)
            else:
                np.multiply(v, dt.type(self.factor_v / fmt.decay_unity), out=v_new)
                np.trunc(v_new, out=v_new)
                v_new += u_new
            if self._bias_f is not None:
                v_new += self._bias_f
        if self.strict and v_new.size and (v_new.max() > lim or v_new.min() < -lim):
            return False
        if not self._v_in_range:
            np.clip(v_new, -lim, lim, out=v_new)
        # 4. threshold, 5. reset
        np.less_equal(v_new, self._threshold_f, out=keep)
        self._reset(v_new, keep)
        return True


class ReadoutLayer:
    """The host-read accumulator of a ``readout`` op (int64: classes only, cheap).

    Per step: ``acc <- clip(acc + (a_in << 6))`` with the symmetric 24-bit clip of ``v``, where
    ``a_in`` is the int32 sum over ``sum_axes`` (every token's synapses reach the same class
    compartment, whose in-port adds them). After the last step the host computes
    ``scale * acc + offset`` in float64.
    """

    def __init__(self, op: Readout, fmt: NumberFormats, *, strict: bool = False):
        self.op, self.fmt, self.strict = op, fmt, strict
        self.acc = None

    def step(self, a_in: np.ndarray, t: int) -> None:
        """One step; ``a_in`` [B, *input shape] integers."""
        op, fmt = self.op, self.fmt
        a = np.asarray(a_in).astype(np.int64)
        axes = tuple(sorted({x % (a.ndim - 1) + 1 for x in op.sum_axes}))
        if axes:
            a = a.sum(axis=axes)
        a = fx.wrap_signed(a, fmt.container_bits)
        if self.strict:
            ok = fx.fits_signed(a, fmt.a_in_bits)
            if not ok.all():
                raise overflow(op.name, f"synaptic input a_in (int{fmt.a_in_bits})", t, a, ok,
                               f"[{fmt.a_in_min}, {fmt.a_in_max}]")
        acc_sum = (0 if self.acc is None else self.acc) + fx.synaptic_input(a, fmt)
        if self.strict:
            ok = fx.fits_signed(acc_sum, fmt.state_bits, symmetric=True)
            if not ok.all():
                raise overflow(op.name, f"accumulator ({fmt.state_bits}-bit, would saturate)", t,
                               np.asarray(acc_sum), ok, f"+-{fmt.state_max}")
        self.acc = fx.clip_signed(acc_sum, fmt.state_bits, symmetric=True)

    def result(self) -> np.ndarray:
        """The logits the host reads: ``scale * acc + offset``, float64 [B, *shape]."""
        return self.op.scale * self.acc.astype(np.float64) + np.asarray(self.op.offset, np.float64)

    def run(self, a_in: np.ndarray) -> np.ndarray:
        """All T steps of ``a_in`` [T, B, ...]; returns ``result()``. Outside strict mode the
        sums, wraps and shifts of all steps are made at once (element-wise, the same integers as
        ``step``); only the accumulation and its clip go step by step."""
        self.acc = None
        if self.strict:
            for t in range(a_in.shape[0]):
                self.step(a_in[t], t)
            return self.result()
        op, fmt = self.op, self.fmt
        a = np.asarray(a_in).astype(np.int64)
        axes = tuple(sorted({x % (a.ndim - 2) + 2 for x in op.sum_axes}))
        if axes:
            a = a.sum(axis=axes)
        received = fx.synaptic_input(fx.wrap_signed(a, fmt.container_bits), fmt)
        for t in range(received.shape[0]):
            acc_sum = received[t] if self.acc is None else self.acc + received[t]
            self.acc = fx.clip_signed(acc_sum, fmt.state_bits, symmetric=True)
        return self.result()
