"""The buffered NoC model (spikec.estimate.timing_noc): clock rounding, injection and ejection
serialisation, back-pressure, head-of-line blocking, SANA-FE's drain order."""
import numpy as np

from spikec.estimate.timing_noc import NocParams, cycles, simulate_step

FREE = NocParams(router_cycles=0, pipe_cycles=0, credit_cycles=0, end_cycles=0)


def one_sender(dst, gen, proc, tail=0, nodes=3, xy=None, params=FREE):
    def arr(v):
        return np.asarray(v, np.int64)
    d = [arr([])] * nodes
    g = [arr([])] * nodes
    p = [arr([])] * nodes
    d[0], g[0], p[0] = arr(dst), arr(gen), arr(proc)
    t = np.zeros(nodes, np.int64)
    t[0] = tail
    return simulate_step(d, g, p, t, np.zeros((nodes, 2), np.int64) if xy is None else xy, params)


def test_clock_rounds_each_time_to_the_nearest_cycle():
    assert cycles([5.1, 4.5, 0.4, 3.8], 1.0).tolist() == [5, 5, 0, 4]
    assert cycles([5.1], 2.0).tolist() == [3]


def test_one_message_costs_generation_flight_and_receive():
    p = NocParams(router_cycles=4, pipe_cycles=4, credit_cycles=3, end_cycles=1)
    r = one_sender([1], [10], [7], tail=2, params=p)
    assert r.receivers_done[1] == 10 + 4 + 7 and r.senders_done[0] == 12
    assert r.total == 10 + 4 + 7 + 1
    xy = np.array([[0, 0], [2, 0], [0, 0]])  # two hops east: two more routers
    assert one_sender([1], [10], [7], xy=xy, params=p).receivers_done[1] == 10 + 4 + 8 + 7


def test_a_slow_receiver_stalls_its_sender_once_the_buffers_are_full():
    n = 100
    fast = one_sender([1] * n, [1] * n, [10] * n, params=NocParams(
        rx_buffer=1 << 20, inject_credits=1 << 20, router_cycles=0, pipe_cycles=0,
        credit_cycles=0, end_cycles=0))
    slow = one_sender([1] * n, [1] * n, [10] * n)
    assert fast.stall[0] == 0 and slow.stall[0] > 0
    assert fast.receivers_done[1] == slow.receivers_done[1] == 1 + 10 * n  # receiver-bound
    # the last message leaves when the receiver has taken all but 25 (1 in process, 8 in its
    # buffer, 8 in each subnet's injection buffer)
    assert fast.senders_done[0] == n
    assert abs(slow.senders_done[0] - (1 + 10 * (n - 25))) <= 10


def test_head_of_line_blocking_delays_a_message_behind_a_busy_receiver():
    # node 0 (tile 0) sends 40 messages to node 1 (tile 1, slow) then one to node 2 (tile 1)
    xy = np.array([[0, 0], [1, 0], [1, 0]])
    dst = [1] * 40 + [2]
    shared = one_sender(dst, [1] * 41, [50] * 40 + [1], xy=xy)
    alone = one_sender([2], [41], [1], xy=xy)
    assert shared.receivers_done[2] > alone.receivers_done[2] + 1000


def test_drain_order_puts_the_receive_work_after_the_senders_compartments():
    # node 0 sends one message to node 1 early, node 2 updates compartments for 1,000 cycles
    d = [np.array([1]), np.array([], np.int64), np.array([], np.int64)]
    g = [np.array([5]), np.array([], np.int64), np.array([], np.int64)]
    p = [np.array([300]), np.array([], np.int64), np.array([], np.int64)]
    tail = np.array([0, 0, 1000])
    xy = np.zeros((3, 2), np.int64)
    overlapped = simulate_step(d, g, p, tail, xy, FREE)
    serial = simulate_step(d, g, p, tail, xy, NocParams(
        router_cycles=0, pipe_cycles=0, credit_cycles=0, end_cycles=0, drain_serialises=True))
    assert overlapped.total == 1000
    assert serial.total == 5 + (1000 - 5) + 300  # the receiver is frozen until node 2 is done
