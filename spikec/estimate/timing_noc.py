"""A message-level network-on-chip model for one chip step: the ``buffered`` NoC model.

The default schedule (``timing.schedule``) works on message counts per core pair and lets every
message leave its sender when the sender has generated it: no buffer ever fills. This model
follows each message instead, as a cycle-level NoC simulator such as Booksim 2 (SANA-FE's
``timing_model="cycle"``) does, with the properties a chip architect sizes:

* **Clock.** Every generation and receive time is rounded to whole router clock cycles
  (``clock_ns``), message by message.
* **Injection serialisation.** A core generates its messages one after the other (its
  compartment updates since the previous message, the spike, ``message_out``); a message enters
  the network when it is generated *and* the core has an injection credit left
  (``inject_credits``: the messages it may have in the network at once, its injection and router
  buffers). A core without a credit stalls: its next compartment updates wait.
* **Router latency.** A message reaches the receiver of its own router ``pipe_cycles`` after it
  is injected (injection channel, VC and switch allocation, crossbar), and ``router_cycles`` more
  per hop; every router's input port buffers ``inject_credits / 2`` messages per subnet (two
  subnets, a core's messages alternating between them) and forwards one message per cycle in
  arrival order, so a message waiting for a busy receiver blocks those behind it on its port
  (head-of-line blocking), including messages for other cores. The network counts as empty
  ``credit_cycles`` after the last message leaves it (the credits' way back).
* **Ejection serialisation and back-pressure.** A core processes its received messages one at
  a time in arrival order (``message_in`` and the message's synaptic ops); beside the message it
  processes, its receive buffer holds ``rx_buffer`` messages. A message arriving at a full buffer
  waits in the network, holding its sender's credit, so a slow receiver stalls its senders.
* **SANA-FE's drain order** (``drain_serialises``, on only to reproduce SANA-FE 2.2.9's cycle
  model): once every message has been injected, SANA-FE's Booksim loop first drains the network
  (receivers work, senders are frozen), then finishes the cores' remaining compartment updates
  while the receivers are frozen, then the remaining receive work. A chip overlaps these; the
  flag exists for the cross-check (docs/estimator.md §5.1).

A step ends ``end_cycles`` after the last work. Inputs are per sender node: the destination
node, generation cycles and receive cycles of each message in sending order, and the generation
cycles after its last message (its ``tail``); ``MessageQueues`` builds them from a mapped
network's firing elements. Pure Python with a heap (tens of microseconds per message), so it
suits cross-checks and small data sets rather than 1,000 samples of a large network.
"""
from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass

import numpy as np

from spikec.estimate.timing_wiring import CPU_SENDER


@dataclass(frozen=True)
class NocParams:
    """Parameters of the buffered NoC model (module docstring). The defaults are the router
    configuration SANA-FE 2.2.9 gives Booksim 2 (SANA-FE ``src/schedule.hpp``: 1 ns clock, one
    virtual channel of 8 flits, two subnets, VC and switch allocation 1 cycle each; its receive
    buffer holds 8 messages); ``pipe_cycles``, ``credit_cycles`` and ``end_cycles`` were fitted
    to SANA-FE's step times of its shipped example networks (to within one cycle)."""

    clock_ns: float = 1.0
    rx_buffer: int = 8
    inject_credits: int = 16
    router_cycles: int = 4
    pipe_cycles: int = 4
    credit_cycles: int = 3
    end_cycles: int = 1
    drain_serialises: bool = False


def cycles(ns: np.ndarray, clock_ns: float) -> np.ndarray:
    """Times in ns -> whole clock cycles (nearest, halves up)."""
    return np.floor(np.asarray(ns, dtype=np.float64) / clock_ns + 0.5).astype(np.int64)


@dataclass
class StepResult:
    """One step of the buffered model, in cycles: ``total``; ``senders_done`` and
    ``receivers_done`` per node (-1: no work); ``stall`` per sender: cycles a generated message
    waited for a credit."""

    total: int
    senders_done: np.ndarray
    receivers_done: np.ndarray
    stall: np.ndarray


def _path(s: int, d: int, xy: np.ndarray, sub: int) -> list:
    """Router input buffers a message from node ``s`` to ``d`` passes, X then Y (per subnet):
    its sender's injection port, then the input port of each router it enters."""
    x, y = int(xy[s, 0]), int(xy[s, 1])
    dx, dy = int(xy[d, 0]), int(xy[d, 1])
    path = [("inj", s, sub)]
    while x != dx:
        step = 1 if dx > x else -1
        x += step
        path.append((x, y, "from_w" if step > 0 else "from_e", sub))
    while y != dy:
        step = 1 if dy > y else -1
        y += step
        path.append((x, y, "from_s" if step > 0 else "from_n", sub))
    return path


class _Buffer:
    __slots__ = ("fifo", "used", "waiters", "next_free")

    def __init__(self):
        self.fifo = deque()     # [arrival time, message id] in arrival order
        self.used = 0           # slots reserved or occupied (credits taken)
        self.waiters = deque()  # upstream buffers (or senders) whose head waits for a slot
        self.next_free = 0      # the input port forwards one message per cycle


class _Step:
    """The event loop of one step (``simulate_step``). Events on a heap ordered by time:
    ``GEN`` a sender's message is generated (or retried after a stall), ``ARRIVE`` a message
    reaches a buffer, ``RETRY`` a buffer's head tries again, ``DONE`` a receiver finished."""

    GEN, ARRIVE, RETRY, DONE = range(4)

    def __init__(self, dst, gen, proc, xy, params: NocParams):
        n = len(dst)
        self.dst, self.gen, self.proc, self.xy, self.p = dst, gen, proc, xy, params
        self.cap = params.inject_credits // 2
        self.nxt = np.zeros(n, np.int64)          # next message per sender
        self.blocked = np.full(n, -1, np.int64)   # since when a generated message waits
        self.stall = np.zeros(n, np.int64)
        self.last_inject = np.full(n, -1, np.int64)
        self.busy_until = np.full(n, -1, np.int64)
        self.rx_done = np.full(n, -1, np.int64)
        self.rxbuf = [deque() for _ in range(n)]
        self.rx_waiters = [deque() for _ in range(n)]
        self.buffers: dict = {}
        self.msgs: list = []    # per message: [buffer keys of its route, destination, cycles, hop]
        self.heap: list = []
        self.seq = 0
        self.net_empty_at = 0

    def push(self, t, kind, a, b=None):
        heapq.heappush(self.heap, (t, self.seq, kind, a, b))
        self.seq += 1

    def buf(self, key) -> _Buffer:
        b = self.buffers.get(key)
        if b is None:
            b = self.buffers[key] = _Buffer()
        return b

    def run(self) -> None:
        for s, d in enumerate(self.dst):
            if d.size:
                self.push(int(self.gen[s][0]), self.GEN, s)
        while self.heap:
            t, _, kind, a, b = heapq.heappop(self.heap)
            if kind == self.GEN:
                if not (b is True and self.blocked[a] < 0):
                    self.inject(a, t)
            elif kind == self.ARRIVE:
                fifo = self.buffers[a].fifo
                fifo.append((t, b))
                if len(fifo) == 1:
                    self.advance(a, t)
            elif kind == self.RETRY:
                self.advance(a, t)
            elif self.busy_until[a] == t:       # DONE: the receiver takes its next message
                if self.rxbuf[a]:
                    self.start(a, t, self.rxbuf[a].popleft())
                self.wake(self.rx_waiters[a], t)

    def inject(self, s: int, t: int) -> None:
        """Sender ``s``'s next message enters its injection port, if the port has room."""
        i = int(self.nxt[s])
        sub = i % 2                              # a core's messages alternate subnets
        key = ("inj", s, sub)
        b = self.buf(key)
        if b.used >= self.cap:
            if self.blocked[s] < 0:
                self.blocked[s] = t
            b.waiters.append(("sender", s))
            return
        if self.blocked[s] >= 0:
            self.stall[s] += t - self.blocked[s]
            self.blocked[s] = -1
        d = int(self.dst[s][i])
        self.msgs.append([_path(s, d, self.xy, sub), d, int(self.proc[s][i]), 0])
        b.used += 1
        self.push(t + self.p.pipe_cycles, self.ARRIVE, key, len(self.msgs) - 1)
        self.nxt[s] = i + 1
        self.last_inject[s] = t
        if i + 1 < self.dst[s].size:
            self.push(t + int(self.gen[s][i + 1]), self.GEN, s)

    def advance(self, key, t: int) -> None:
        """Forward the head of buffer ``key`` if the next stage (a router's input port, or the
        receiving core) has room; else wait for it."""
        b = self.buffers[key]
        if not b.fifo:
            return
        if b.next_free > t:
            self.push(b.next_free, self.RETRY, key)
            return
        m = self.msgs[b.fifo[0][1]]
        path, d, p, h = m
        if h + 1 < len(path):
            nb = self.buf(path[h + 1])
            if nb.used >= self.cap:
                nb.waiters.append(("buffer", key))
                return
            nb.used += 1
            m[3] = h + 1
            self.push(t + self.p.router_cycles, self.ARRIVE, path[h + 1], b.fifo[0][1])
        else:
            if self.busy_until[d] <= t and not self.rxbuf[d]:
                self.start(d, t, p)
            elif len(self.rxbuf[d]) < self.p.rx_buffer:
                self.rxbuf[d].append(p)
            else:
                self.rx_waiters[d].append(("buffer", key))
                return
            self.net_empty_at = max(self.net_empty_at, t + self.p.credit_cycles)
        b.fifo.popleft()
        b.used -= 1
        b.next_free = t + 1
        self.wake(b.waiters, t)
        if b.fifo:
            self.push(t + 1, self.RETRY, key)

    def wake(self, waiters: deque, t: int) -> None:
        while waiters:
            kind, who = waiters.popleft()
            if kind == "sender":
                self.push(t, self.GEN, who, True)
            else:
                self.push(t, self.RETRY, who)

    def start(self, d: int, t: int, p: int) -> None:
        self.busy_until[d] = self.rx_done[d] = t + p
        self.push(t + p, self.DONE, d)


def simulate_step(dst: list[np.ndarray], gen: list[np.ndarray], proc: list[np.ndarray],
                  tail: np.ndarray, xy: np.ndarray, params: NocParams) -> StepResult:
    """Simulate one chip step.

    Parameters
    ----------
    dst, gen, proc : per sender node, int arrays over its messages in sending order: the
        destination node, the generation cycles before the message leaves, the receive cycles
        at the destination.
    tail : int [nodes]: generation cycles after a sender's last message (or its only work).
    xy : int [nodes, 2]: each node's router (tile) position; nodes of one tile share a router.
    """
    sim = _Step(dst, gen, proc, xy, params)
    sim.run()
    last, rx_done = sim.last_inject, sim.rx_done
    tail = np.asarray(tail, np.int64)
    senders_done = np.where(last >= 0, last + tail, np.where(tail > 0, tail, -1))
    if not params.drain_serialises:
        total = int(max(senders_done.max(initial=0), rx_done.max(initial=0)))
        return StepResult(total + params.end_cycles, senders_done, rx_done, sim.stall)
    # SANA-FE's drain order: after the last injection (t1) the network drains (t2) with the
    # senders frozen, then the senders finish, then the receivers (frozen until then)
    t1 = int(last.max(initial=0))
    t2 = max(t1, sim.net_empty_at)
    gen_left = int(np.maximum(senders_done - t1, 0).max(initial=0))
    rx_left = int(np.maximum(rx_done - t2, 0).max(initial=0))
    total = t2 + gen_left + rx_left + params.end_cycles
    senders_done = np.where(senders_done > t1, t2 + senders_done - t1, senders_done)
    rx_done = np.where(rx_done > t2, rx_done + gen_left, rx_done)
    return StepResult(total, senders_done, rx_done, sim.stall)


@dataclass
class _Fanout:
    """Per element of one sending unit (CSR over ``ptr``): destination nodes and receive ns."""

    ptr: np.ndarray
    dst: np.ndarray
    recv_ns: np.ndarray


def _fanouts(wiring, mapping, costs) -> dict[str, _Fanout]:
    from spikec.estimate.timing import _per_core

    t_syn = _per_core(mapping, costs, "t")
    t_in = costs.t("message_in")
    out = {}
    for name, sm in wiring.senders.items():
        n_p = sm.pair_ids.size
        col_of = np.full(wiring.cores + 2, -1, np.int64)   # destination node -> its syn column
        col_of[sm.syn_cores] = n_p + np.arange(sm.syn_cores.size)
        rows, cols = np.nonzero(sm.matrix[:, :n_p])
        dst = wiring.pair_dst[sm.pair_ids[cols]]
        order = np.lexsort((dst, rows))       # an element's messages in destination order
        rows, dst = rows[order], dst[order]
        col = col_of[dst]
        syn = np.where(col >= 0, sm.matrix[rows, np.maximum(col, 0)], 0.0).astype(np.float64)
        recv = t_in + syn * np.where(dst < wiring.cores, t_syn[np.minimum(dst, wiring.cores - 1)],
                                     0.0)
        ptr = np.searchsorted(rows, np.arange(sm.matrix.shape[0] + 1))
        out[name] = _Fanout(ptr, dst.astype(np.int64), recv)
    return out


class MessageQueues:
    """Builds, per chip step, every node's message queue for ``simulate_step`` from the
    elements that fire: a core updates its compartments in order (``t_idle``, or ``t_active``
    where the compartment was updated; ``spike_generate`` where it fires) and sends each firing
    compartment's messages (``message_out`` each) to its destination cores in core order, each
    costing its receiver ``message_in`` plus its synaptic ops; the host sends its input
    (``message_out`` each)."""

    def __init__(self, wiring, mapping, costs, upd: dict, params: NocParams):
        from spikec.estimate.timing_wiring import _positions

        self.wiring, self.mapping, self.params = wiring, mapping, params
        self.fan = _fanouts(wiring, mapping, costs)
        self.t_out, self.t_spike = costs.t("message_out"), costs.t("spike_generate")
        self.upd = upd
        nodes = wiring.cores + 2
        x, y = _positions(mapping, np.arange(nodes))[:2]
        self.xy = np.stack([x, y], axis=1).astype(np.int64)
        self.layers = {lm.layer.name: lm for lm in mapping.layers}
        self.host_node = {name: int(wiring.pair_src[sm.pair_ids[0]])
                          for name, sm in wiring.senders.items()
                          if name not in self.layers and sm.pair_ids.size}

    def step(self, fired: dict[str, np.ndarray], updated: dict[str, np.ndarray],
             cpu_ns: float = 0.0) -> StepResult:
        """One step: ``fired`` unit -> bool [elements] (a layer missing here fires nothing);
        ``updated`` layer -> bool [neurons] (compartments updated, not only accessed; a layer
        missing here counts as idle);
        ``cpu_ns``: the embedded CPUs' compute before they send their products."""
        nodes = self.wiring.cores + 2
        dst = [[] for _ in range(nodes)]
        gen = [[] for _ in range(nodes)]
        proc = [[] for _ in range(nodes)]
        tail = np.zeros(nodes)
        tail[self.wiring.cores + CPU_SENDER] = cpu_ns
        for name, f in fired.items():
            fan = self.fan.get(name)
            if name not in self.layers:         # the host's input or the CPUs' products
                if fan is None or fan.dst.size == 0:
                    continue
                node = self.host_node[name]
                for e in np.nonzero(f)[0]:
                    a, b = fan.ptr[e], fan.ptr[e + 1]
                    dst[node] += fan.dst[a:b].tolist()
                    gen[node] += [self.t_out] * (b - a)
                    proc[node] += fan.recv_ns[a:b].tolist()
        for name, lm in self.layers.items():    # every core updates all its compartments
            f = fired.get(name)
            f = np.zeros(lm.layer.neurons, bool) if f is None else f
            u = updated.get(name, np.zeros(f.size, bool))
            soma = np.where(u, self.upd["t_active"], self.upd["t_idle"]) + f * self.t_spike
            for core in lm.core_ids:
                self._core(int(core), lm, f, soma, self.fan.get(name), dst, gen, proc, tail)
        cpu = self.wiring.cores + CPU_SENDER
        if gen[cpu]:                            # the CPUs compute, then send
            gen[cpu][0] += cpu_ns
            tail[cpu] = 0.0
        clock = self.params.clock_ns
        return simulate_step([np.asarray(d, np.int64) for d in dst],
                             [cycles(g, clock) for g in gen], [cycles(p, clock) for p in proc],
                             cycles(tail, clock), self.xy, self.params)

    def _core(self, core, lm, f, soma, fan, dst, gen, proc, tail) -> None:
        elems = np.nonzero(lm.element_core == core)[0]
        extra = lm.neurons[core - lm.first_core] - elems.size  # compartments not sending
        t = np.cumsum(soma[elems])
        done = 0.0
        for k in np.nonzero(f[elems])[0]:
            e = elems[k]
            a, b = (fan.ptr[e], fan.ptr[e + 1]) if fan is not None else (0, 0)
            if a == b:
                continue
            dst[core] += fan.dst[a:b].tolist()
            gen[core] += [t[k] - done + self.t_out] + [self.t_out] * (b - a - 1)
            proc[core] += fan.recv_ns[a:b].tolist()
            done = t[k]
        tail[core] = (t[-1] if t.size else 0.0) - done + max(extra, 0) * self.upd["t_idle"]


__all__ = ["MessageQueues", "NocParams", "StepResult", "cycles", "simulate_step"]
