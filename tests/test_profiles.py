"""Hardware profiles: every shipped profile loads with a source for every figure; malformed
profiles fail with one line naming the file and the field."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from spikec.errors import ProfileError
from spikec.target import LAVA_FIXED_PT, HardwareProfile, list_profiles, load_profile, profiles_dir

SHIPPED = ["hala-point", "kapoho-point", "loihi", "loihi2", "speck", "truenorth"]


def test_list_profiles():
    assert set(SHIPPED) <= set(list_profiles())
    assert list_profiles() == sorted(list_profiles())
    assert profiles_dir().name == "hardware_profiles"


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_profile_loads_with_sources(name):
    p = load_profile(name)
    assert isinstance(p, HardwareProfile) and p.name == name and p.description
    assert p.capacity.cores_per_chip > 0 and p.capacity.neurons_per_core > 0
    for path, fig in p.figures.items():
        assert fig.source, path
        if fig.status in ("estimated", "unknown"):
            assert fig.note, f"{name}: {path} is {fig.status} without a note saying why"
        if fig.value is None:
            assert fig.status == "unknown", path
    # Every number the dataclasses expose has its figure.
    for section in ("capacity", "system", "energy", "latency"):
        for field, value in vars(getattr(p, section)).items():
            if value is not None:
                assert f"{section}.{field}" in p.figures, (section, field)


def test_loihi_family():
    l2, l1 = load_profile("loihi2"), load_profile("loihi")
    assert l2.formats == LAVA_FIXED_PT and l2.formats.graded_spikes
    assert not l1.formats.graded_spikes and l1.formats.payload_bits == 0
    assert (l2.capacity.cores_per_chip, l2.capacity.neurons_per_core) == (128, 8192)
    assert (l1.capacity.cores_per_chip, l1.capacity.neurons_per_core) == (128, 1024)
    # No per-op energy is published for Loihi 2: its figures must say they are estimates.
    assert l2.figure("energy.synaptic_op").status == "estimated"
    assert "Loihi 2" in l2.figure("energy.synaptic_op").note
    assert l1.energy.synaptic_op == 23.6 and l1.latency.barrier_sync_all_tiles == 465.0
    assert l1.figures["alternatives.sanafe.energy.synaptic_op_dense"].value == 35.5
    assert "sanafe" in l1.alternatives


def test_systems_extend_loihi2():
    kp, hp, l2 = load_profile("kapoho-point"), load_profile("hala-point"), load_profile("loihi2")
    assert (kp.kind, kp.system.chips) == ("system", 8)
    assert (hp.kind, hp.system.chips) == ("system", 1152)
    assert kp.formats == hp.formats == l2.formats
    assert hp.total_cores == 140544
    assert kp.energy == l2.energy


def test_other_kinds_of_chip():
    tn, sp = load_profile("truenorth"), load_profile("speck")
    assert tn.capacity.cores_per_chip == 4096 and tn.capacity.neurons_per_core == 256
    assert tn.energy.synaptic_op == 26.0 and tn.energy.neuron_update_active is None
    assert sp.capacity.cores_per_chip == 9 and sp.formats.state_bits == 16
    assert not tn.formats.is_lava and not sp.formats.is_lava


def test_overrides_revalidate():
    p = load_profile("loihi2")
    q = p.override("neurons_per_core", 2048)
    assert q.capacity.neurons_per_core == 2048 and p.capacity.neurons_per_core == 8192
    assert q.figure("capacity.neurons_per_core").status == "override"
    assert p.override("formats.weight_bits", 4).formats.weight_bits == 4
    c = p.with_chips(5)
    assert c.system.chips == 5 and c.system.chip_mesh[0] * c.system.chip_mesh[1] >= 5
    with pytest.raises(ProfileError, match="capacity.neurons_per_core: expected an integer"):
        p.override("neurons_per_core", "many")
    with pytest.raises(ProfileError, match="unknown"):
        p.override("no_such_field", 1)
    with pytest.raises(ProfileError, match="ambiguous"):
        p.override("synaptic_op", 1.0)       # in [energy] and [latency]
    with pytest.raises(ProfileError, match="positive integer"):
        p.with_chips(0)


# ----------------------------------------------------------------------------- malformed profiles

LOIHI = (Path(profiles_dir()) / "loihi.toml").read_text()


def write(tmp_path: Path, text: str, name: str = "bad.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def one_line_error(path) -> str:
    with pytest.raises(ProfileError) as exc:
        load_profile(path)
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_user_file_loads(tmp_path):
    assert load_profile(write(tmp_path, LOIHI)).capacity.neurons_per_core == 1024


@pytest.mark.parametrize("edit,field,why", [
    (lambda t: re.sub(r"(?m)^neurons_per_core = .*\n", "", t), "capacity.neurons_per_core",
     "missing field"),
    (lambda t: t.replace("neurons_per_core = 1024", 'neurons_per_core = "many"'),
     "capacity.neurons_per_core", "expected an integer"),
    (lambda t: t.replace("synaptic_op = 23.6", 'synaptic_op = "fast"'), "energy.synaptic_op",
     "expected a number"),
    (lambda t: t.replace("graded_spikes = { value = false", "graded_spikes = { value = 0"),
     "formats.graded_spikes", "expected true or false"),
    (lambda t: t.replace("tile_mesh = { value = [8, 4]", "tile_mesh = { value = [8]"),
     "capacity.tile_mesh", "two positive integers"),
    (lambda t: t.replace("cores_per_chip = 128", "cores_per_chip = 128\ncores_per_chp = 4"),
     "capacity.cores_per_chp", "unknown field"),
    (lambda t: t.replace("decay_unity = 4096", "decay_unity = 4000"), "formats.decay_unity",
     "2**decay_bits"),
    (lambda t: t.replace("state_bits = 24", "state_bits = { status = \"unknown\", note = \"x\" }"),
     "formats.state_bits", "must be known"),
    (lambda t: t.replace('[energy]\n# pJ per event, Davies et al. 2018 Table 1 (pre-silicon, 0.75 V).\n'
                         'source = "Davies et al. 2018, IEEE Micro 38(1), Table 1"\n', "[energy]\n"),
     "energy.synaptic_op", "no source"),
    (lambda t: t.replace("chips = { value = 1,", "chips = { value = 3,"), "system.chip_mesh",
     "fewer than"),
    (lambda t: t.replace('arithmetic = "lava_fixed_pt"', 'arithmetic = "magic"'),
     "formats.arithmetic", "expected one of"),
    (lambda t: t.replace('name = "loihi"\n', ""), "profile.name", "missing field"),
    (lambda t: t.replace("[system]", "[sytem]"), "sytem", "unknown table"),
    (lambda t: t.replace("synaptic_op = 3.5", 'synaptic_op = { value = 3.5, status = "guess" }'),
     "latency.synaptic_op", "status"),
    (lambda t: t.replace("synaptic_op = 3.5", 'synaptic_op = { value = 3.5, status = "estimated" }'),
     "latency.synaptic_op", "needs a note"),
    (lambda t: t.replace("synaptic_op = 3.5", "synaptic_op = -3.5"), "latency.synaptic_op",
     "negative"),
])
def test_malformed_profile_names_file_and_field(tmp_path, edit, field, why):
    text = edit(LOIHI)
    assert text != LOIHI, "the edit did not apply"
    msg = one_line_error(write(tmp_path, text))
    assert "bad.toml" in msg and field in msg and why in msg, msg


def test_not_toml_and_missing_files(tmp_path):
    assert "not valid TOML" in one_line_error(write(tmp_path, "[profile\nname = 1"))
    assert "not found" in one_line_error(tmp_path / "absent.toml")
    msg = one_line_error("no-such-chip")
    assert "unknown hardware profile 'no-such-chip'" in msg and "loihi2" in msg


def test_extends(tmp_path):
    write(tmp_path, LOIHI, "mychip.toml")
    sysfile = write(tmp_path, '[profile]\nname = "two"\ndescription = "two chips"\nkind = "system"\n'
                    'extends = "mychip"\n[system]\nsource = "test"\nchips = 2\n'
                    "chip_mesh = [2, 1]\n", "two.toml")
    p = load_profile(sysfile)
    assert p.system.chips == 2 and p.capacity.neurons_per_core == 1024 and p.name == "two"
    a = write(tmp_path, '[profile]\nname = "a"\ndescription = "a"\nextends = "b"\n', "a.toml")
    write(tmp_path, '[profile]\nname = "b"\ndescription = "b"\nextends = "a"\n', "b.toml")
    assert "circular" in one_line_error(a)


def test_profiles_dir_env(tmp_path, monkeypatch):
    write(tmp_path, LOIHI, "custom.toml")
    monkeypatch.setenv("SPIKEC_PROFILES_DIR", str(tmp_path))
    assert list_profiles() == ["custom"]
    assert load_profile("custom").capacity.cores_per_chip == 128
