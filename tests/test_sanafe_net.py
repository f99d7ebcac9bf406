"""Reading SANA-FE's network and architecture format (spikec.estimate.sanafe_net) on a small
bias-driven network that ships in tests/data, and, where the optional sanafe package is
installed, spikec's simulation and timing of it against SANA-FE's own."""
from pathlib import Path

import numpy as np
import pytest

from spikec.errors import InputFileError
from spikec.estimate.sanafe_net import load_arch, load_net, simulate, time_network

pytest.importorskip("yaml", reason="optional extra: pip install 'spikec[sanafe]'")
DATA = Path(__file__).resolve().parent / "data"
ARCH, NET = DATA / "sanafe_bias_arch.yaml", DATA / "sanafe_bias_net.yaml"


def test_reads_groups_ranges_dense_edges_and_mappings():
    arch = load_arch(ARCH)
    assert len(arch.cores) == 4 and arch.xy.tolist() == [[0, 0], [1, 0]]
    assert "input_soma[7]" in arch.cores[0].soma and "if_soma" in arch.cores[3].soma
    net = load_net(NET, arch)
    assert net.names[:5] == ["drive.0", "drive.1", "drive.2", "drive.3", "cue.0"]
    assert [a["bias"] for a in net.attrs[:4]] == [0.25, 0.5, 0.375, 0.375]
    assert net.attrs[5]["leak_decay"] == 0.5 and net.attrs[4]["soma_hw_name"] == "input_soma[0]"
    assert net.core.tolist() == [0, 0, 0, 0, 1, 1, 2, 2, 3]
    dense = (net.pre < 4) & (net.post >= 5) & (net.post <= 7)
    assert dense.sum() == 12
    w = np.zeros((4, 3))
    w[net.pre[dense], net.post[dense] - 5] = net.weight[dense]
    assert w[0].tolist() == [1.0, 0.5, 0.0] and w[3].tolist() == [1.0, 0.0, 0.5]


def test_bias_driven_if_neurons_fire_on_schedule():
    arch = load_arch(ARCH)
    net = load_net(NET, arch)
    fired, updated = simulate(net, arch, 16)
    # drive.0: bias 1/4, threshold 1, no leak: v = 1.25 > 1 on its 5th step, then every 5th
    assert np.nonzero(fired[:, 0])[0].tolist() == [4, 9, 14]
    assert np.nonzero(fired[:, 1])[0].tolist() == [2, 5, 8, 11, 14]   # bias 1/2: 1.5 > 1
    assert np.nonzero(fired[:, 4])[0].tolist() == [1, 4, 5]           # the spike list
    assert updated[:, :4].all() and not updated[:, 4].any()           # biased; input soma
    assert fired[:, 5:].any()                                         # the drive reaches on


def test_time_network_counts_every_event_once():
    arch = load_arch(ARCH)
    net = load_net(NET, arch)
    lat, energy, fired = time_network(net, arch, 16, "detailed")
    cyc, energy_c, _ = time_network(net, arch, 16, "cycle")
    assert (lat > 0).all() and np.array_equal(energy, energy_c)
    quiet = ~fired.any(axis=1)
    # a step without spikes: each core's accesses (and updates) one after the other, 2 + 3 ns
    # per biased neuron on core 0.0 (4 neurons) sets the step
    assert np.allclose(lat[quiet & (np.arange(16) > 0)], 20e-9)


def test_bad_files_name_what_is_wrong(tmp_path):
    arch = load_arch(ARCH)
    bad = tmp_path / "net.yaml"
    bad.write_text("network:\n  groups:\n    - name: a\n      neurons:\n        - 0: []\n"
                   "  edges:\n    - a.0 -> b.0: [weight: 1]\n")
    with pytest.raises(InputFileError, match="unknown neuron or group 'b.0'"):
        load_net(bad, arch)
    bad.write_text("network:\n  groups:\n    - name: a\n      neurons:\n        - 0: []\n")
    with pytest.raises(InputFileError, match="a.0 is not mapped"):
        load_net(bad, arch)
    with pytest.raises(InputFileError, match="no 'architecture' section"):
        load_arch(bad)


@pytest.mark.parametrize("model", ["detailed", "cycle"])
def test_agrees_with_sanafe_step_by_step(model):
    sanafe = pytest.importorskip("sanafe", reason="optional extra: pip install 'spikec[sanafe]'")
    steps = 16
    chip_arch = sanafe.load_arch(str(ARCH))
    chip = sanafe.SpikingChip(chip_arch)
    chip.load(sanafe.load_net(str(NET), chip_arch))
    res = chip.sim(steps, timing_model=model, perf_trace=True, spike_trace=True,
                   processing_threads=1)
    arch = load_arch(ARCH)
    net = load_net(NET, arch)
    lat, energy, fired = time_network(net, arch, steps, model)
    ref_spikes = [sorted(f"{a.group_name}.{a.neuron_offset}" for a in st)
                  for st in res["spike_trace"]]
    assert ref_spikes == [sorted(net.names[i] for i in np.nonzero(f)[0]) for f in fired]
    ref_lat = np.asarray(res["perf_trace"]["sim_time"])
    ref_e = np.asarray(res["perf_trace"]["total_energy"])
    # SANA-FE sends a neuron's messages to its destination cores in an order that varies from
    # run to run; on this network that moves its steps by up to 5 ns (detailed: 0.0% or 4.9%
    # from spikec's) and 6 ns (cycle: 1.6% or 12%); spikec sends them in core order
    bound = 0.06 if model == "detailed" else 0.15
    assert np.max(np.abs(lat - ref_lat) / ref_lat) < bound
    assert np.max(np.abs(energy - ref_e) / ref_e) < 1e-6
