"""Hardware profiles: one human-editable TOML file per chip or system, validated on load.

A profile has the tables ``[profile]`` (name, description, kind, optional ``extends``), ``[formats]``
(``NumberFormats``), ``[capacity]`` (per chip and per core), ``[system]`` (chips and their mesh),
``[energy]`` (pJ per event), ``[latency]`` (ns per event), and optionally ``[alternatives.NAME]``
(second-opinion cost models, free-form figures) and ``[info]`` (free-form figures).

Every figure carries its source. A figure is written either as an inline table
``{ value = 128, source = "...", status = "published", note = "..." }`` or as a plain value, which
takes the ``source`` (and ``status``) keys of its table. ``status`` is one of ``STATUSES``; an
``"unknown"`` figure may omit ``value`` (it loads as ``None``) and must say why in ``note``.

A system profile names a chip profile in ``extends`` and overrides tables field by field.

Profile names resolve to ``<profiles dir>/NAME.toml``. The profiles directory is
``$SPIKEC_PROFILES_DIR`` when set, else the package data of ``spikec.hardware_profiles`` (the
top-level ``hardware_profiles/`` folder, installed inside the package). ``--profile PATH`` takes
any file.
"""
from __future__ import annotations

import copy
import math
import os
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10 (the Lava environment)
    import tomli as tomllib

from spikec.errors import ProfileError
from spikec.target.formats import ARITHMETICS, LAVA_ARITHMETIC, NumberFormats

STATUSES = ("published", "measured", "calibrated", "derived", "source-code", "estimated", "unknown",
            "override")
KINDS = ("chip", "system")


@dataclass(frozen=True)
class Figure:
    """One number of a profile with its provenance.

    Attributes
    ----------
    value : int, float, bool, str, tuple or None
        ``None`` only when ``status`` is ``"unknown"``.
    source : str
        Where the number comes from (paper, datasheet, source file and line).
    status : str
        One of ``STATUSES``: ``estimated`` and ``unknown`` figures say why in ``note``.
    note : str
    """

    value: Any
    source: str
    status: str
    note: str = ""


@dataclass(frozen=True)
class Capacity:
    """Resources of one chip.

    Attributes
    ----------
    cores_per_chip : int
        Neuro-cores per chip.
    neurons_per_core : int
        Most neurons (compartments) one core holds.
    synaptic_memory_bits_per_core : int or None
        Synaptic memory per core, in bits.
    input_axons_per_core, output_axons_per_core : int or None
        Fan-in / fan-out axon table entries per core.
    embedded_cpus : int or None
        Embedded (management) CPUs per chip.
    tile_mesh : (int, int) or None
        Tiles per chip along x and y of the on-chip mesh; a hop moves one tile.
    cores_per_tile : int or None
    max_neurons_per_chip, max_synapses_per_chip : int or None
        Chip-level limits as published (may be below cores x per-core limits).
    synapse_index_bits : int or None
        Bits that address a synapse's target within a core, stored beside each weight.
    conv_weight_sharing : bool or None
        Whether a convolution's kernel is stored once per core instead of once per synapse.
    max_axon_delay_steps : int or None
        Longest programmable axon/synaptic delay, in time steps.
    """

    cores_per_chip: int
    neurons_per_core: int
    synaptic_memory_bits_per_core: int | None
    input_axons_per_core: int | None
    output_axons_per_core: int | None
    embedded_cpus: int | None
    tile_mesh: tuple[int, int] | None
    cores_per_tile: int | None
    max_neurons_per_chip: int | None
    max_synapses_per_chip: int | None
    synapse_index_bits: int | None
    conv_weight_sharing: bool | None
    max_axon_delay_steps: int | None


@dataclass(frozen=True)
class System:
    """Chips of a system. ``chip_mesh``: chips along x and y of the chip-to-chip mesh."""

    chips: int
    chip_mesh: tuple[int, int]


@dataclass(frozen=True)
class EventCosts:
    """Cost of each kind of event: energy in pJ (``[energy]``) or latency in ns (``[latency]``).

    ``None``: not known for this chip (see the figure's note).

    Attributes
    ----------
    synaptic_op : float or None
        One synaptic event (one input spike delivered to one synapse).
    neuron_update_active, neuron_update_inactive : float or None
        One compartment update in a step with / without input.
    spike_out : float or None
        Generating one output spike (within a tile).
    hop_east_west, hop_north_south : float or None
        One mesh hop of a spike message along x / y.
    barrier_sync_one_tile, barrier_sync_all_tiles : float or None
        End-of-step barrier synchronization across one tile / the whole chip (latency only;
        ``None`` in ``[energy]`` unless a source gives it).
    chip_hop : float or None
        A spike message crossing one chip-to-chip link of a system (optional; the estimator
        counts chip hops from its placement).
    embedded_cpu_op : float or None
        One integer multiply-accumulate of work the embedded CPUs do (the SSA product under the
        ``host`` lowering; optional).
    """

    synaptic_op: float | None
    neuron_update_active: float | None
    neuron_update_inactive: float | None
    spike_out: float | None
    hop_east_west: float | None
    hop_north_south: float | None
    barrier_sync_one_tile: float | None = None
    barrier_sync_all_tiles: float | None = None
    chip_hop: float | None = None
    embedded_cpu_op: float | None = None


@dataclass(frozen=True)
class HardwareProfile:
    """A loaded, validated hardware profile.

    Attributes
    ----------
    name, description, kind : str
        ``kind`` is ``"chip"`` or ``"system"``.
    path : Path
        The file it was loaded from.
    formats : NumberFormats
    capacity : Capacity
    system : System
    energy : EventCosts
        pJ per event.
    latency : EventCosts
        ns per event.
    figures : dict
        ``"section.field"`` -> ``Figure``: the provenance of every number above, plus the
        ``alternatives.NAME.energy.FIELD`` / ``...latency.FIELD`` and ``info.FIELD`` figures.
    alternatives : dict
        NAME -> description of each second-opinion cost model (figures in ``figures``).
    """

    name: str
    description: str
    kind: str
    path: Path
    formats: NumberFormats
    capacity: Capacity
    system: System
    energy: EventCosts
    latency: EventCosts
    figures: dict[str, Figure] = field(repr=False)
    alternatives: dict[str, str] = field(default_factory=dict)
    _raw: dict = field(default=None, repr=False, compare=False)

    @property
    def total_cores(self) -> int:
        return self.capacity.cores_per_chip * self.system.chips

    def figure(self, path: str) -> Figure:
        """The ``Figure`` behind ``"section.field"`` (e.g. ``"energy.synaptic_op"``)."""
        try:
            return self.figures[path]
        except KeyError:
            raise ProfileError(f"{self.path}: no figure {path!r}") from None

    def override(self, name: str, value: Any) -> "HardwareProfile":
        """A new profile with one figure replaced (status ``override``), validated again.

        ``name`` is ``"section.field"`` or a field name that occurs in one section only
        (``neurons_per_core``, ``weight_bits``). Used by ``--sweep``.
        """
        return self.with_overrides({name: value})

    def with_overrides(self, values: dict[str, Any]) -> "HardwareProfile":
        """A new profile with several figures replaced at once (see ``override``)."""
        raw = copy.deepcopy(self._raw)
        for name, value in values.items():
            section, key = _resolve_field(name, self.path)
            raw.setdefault(section, {})[key] = {"value": value, "source": "user override",
                                                "status": "override"}
        return _build(raw, self.path)

    def with_chips(self, chips: int) -> "HardwareProfile":
        """A new profile with ``chips`` chips on a near-square mesh (``--chips N``)."""
        if not isinstance(chips, int) or isinstance(chips, bool) or chips < 1:
            raise ProfileError(f"{self.path}: system.chips must be a positive integer, got {chips!r}")
        x = math.ceil(math.sqrt(chips))
        y = math.ceil(chips / x)
        return self.with_overrides({"system.chips": chips, "system.chip_mesh": [x, y]})


# ----------------------------------------------------------------------------- schema

_INT, _FLOAT, _BOOL, _STR, _PAIR = "an integer", "a number", "true or false", "a string", \
    "a list of two positive integers"

# section -> field -> (type, may be unknown)
_SCHEMA: dict[str, dict[str, tuple[str, bool]]] = {
    "formats": {
        "arithmetic": (_STR, False),
        **{f.name: (_INT, True) for f in fields(NumberFormats)
           if f.name not in ("arithmetic", "graded_spikes")},
        "graded_spikes": (_BOOL, False),
    },
    "capacity": {
        "cores_per_chip": (_INT, False), "neurons_per_core": (_INT, False),
        "synaptic_memory_bits_per_core": (_INT, True), "input_axons_per_core": (_INT, True),
        "output_axons_per_core": (_INT, True), "embedded_cpus": (_INT, True),
        "tile_mesh": (_PAIR, True), "cores_per_tile": (_INT, True),
        "max_neurons_per_chip": (_INT, True), "max_synapses_per_chip": (_INT, True),
        "synapse_index_bits": (_INT, True), "conv_weight_sharing": (_BOOL, True),
        "max_axon_delay_steps": (_INT, True),
    },
    "system": {"chips": (_INT, False), "chip_mesh": (_PAIR, False)},
    "energy": {f.name: (_FLOAT, True) for f in fields(EventCosts)},
    "latency": {f.name: (_FLOAT, True) for f in fields(EventCosts)},
}
# Figures a profile may leave out entirely (they load as unknown).
_OPTIONAL = {("energy", "barrier_sync_one_tile"), ("energy", "barrier_sync_all_tiles"),
             # used by spikec.estimate; no shipped chip publishes them
             ("energy", "chip_hop"), ("latency", "chip_hop"),
             ("energy", "embedded_cpu_op"), ("latency", "embedded_cpu_op")}
_SECTION_META = ("source", "status", "note")


def _resolve_field(name: str, path: Path) -> tuple[str, str]:
    if "." in name:
        section, key = name.split(".", 1)
        if section in _SCHEMA and key in _SCHEMA[section]:
            return section, key
        raise ProfileError(f"{path}: unknown profile field {name!r}")
    hits = [s for s, keys in _SCHEMA.items() if name in keys]
    if len(hits) != 1:
        where = " or ".join(f"{s}.{name}" for s in hits) if hits else "no section"
        raise ProfileError(f"{path}: profile field {name!r} is ambiguous or unknown ({where})")
    return hits[0], name


def _check_type(value: Any, kind: str) -> Any:
    """``value`` converted to ``kind``, or raise ValueError."""
    if kind == _INT and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind == _FLOAT and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind == _BOOL and isinstance(value, bool):
        return value
    if kind == _STR and isinstance(value, str):
        return value
    if kind == _PAIR and isinstance(value, (list, tuple)) and len(value) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
        return (value[0], value[1])
    raise ValueError


def _figure(raw: Any, table: dict, where: str, path: Path, kind: str | None) -> Figure:
    """Parse one figure (inline table or plain value with the table's source)."""
    if isinstance(raw, dict):
        unknown = set(raw) - {"value", "source", "status", "note"}
        if unknown:
            raise ProfileError(f"{path}: {where}: unknown key {sorted(unknown)[0]!r} in figure "
                               "(allowed: value, source, status, note)")
        value, source = raw.get("value"), raw.get("source", table.get("source"))
        status = raw.get("status", table.get("status", "published"))
        note = raw.get("note", "")
    else:
        value, source = raw, table.get("source")
        status, note = table.get("status", "published"), table.get("note", "")
    if not isinstance(source, str) or not source.strip():
        raise ProfileError(f"{path}: {where}: figure has no source (give `source` in the figure "
                           "or in its table)")
    if status not in STATUSES:
        raise ProfileError(f"{path}: {where}: status {status!r} is not one of {', '.join(STATUSES)}")
    if not isinstance(note, str):
        raise ProfileError(f"{path}: {where}: note must be a string")
    if value is None:
        if status != "unknown":
            raise ProfileError(f"{path}: {where}: missing value (or mark the figure "
                               "status = \"unknown\" with a note saying why)")
        if not note:
            raise ProfileError(f"{path}: {where}: an unknown figure needs a note saying why")
    elif kind is not None:
        try:
            value = _check_type(value, kind)
        except ValueError:
            raise ProfileError(f"{path}: {where}: expected {kind}, got {value!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise ProfileError(f"{path}: {where}: must be a finite number, got {value}")
    if status in ("estimated",) and not note:
        raise ProfileError(f"{path}: {where}: an estimated figure needs a note saying how")
    return Figure(value, source.strip(), status, note)


def _section(raw: dict, name: str, path: Path, figures: dict[str, Figure]) -> dict[str, Any]:
    table = raw.get(name)
    if not isinstance(table, dict):
        raise ProfileError(f"{path}: missing table [{name}]")
    schema = _SCHEMA[name]
    extra = set(table) - set(schema) - set(_SECTION_META)
    if extra:
        raise ProfileError(f"{path}: {name}.{sorted(extra)[0]}: unknown field "
                           f"(known: {', '.join(schema)})")
    values = {}
    for key, (kind, may_be_unknown) in schema.items():
        where = f"{name}.{key}"
        if key not in table:
            if (name, key) in _OPTIONAL:
                values[key] = None
                continue
            raise ProfileError(f"{path}: {where}: missing field")
        fig = _figure(table[key], table, where, path, kind)
        if fig.value is None and not may_be_unknown:
            raise ProfileError(f"{path}: {where}: must be known (status \"unknown\" not allowed)")
        figures[where] = fig
        values[key] = fig.value
    return values


def _build(raw: dict, path: Path) -> HardwareProfile:
    """Validate the merged TOML tables ``raw`` and build the profile."""
    meta = raw.get("profile")
    if not isinstance(meta, dict):
        raise ProfileError(f"{path}: missing table [profile]")
    for key in ("name", "description"):
        if not isinstance(meta.get(key), str) or not meta[key].strip():
            raise ProfileError(f"{path}: profile.{key}: missing field (a non-empty string)")
    kind = meta.get("kind", "chip")
    if kind not in KINDS:
        raise ProfileError(f"{path}: profile.kind: expected one of {', '.join(KINDS)}, got {kind!r}")
    allowed = {"profile", "formats", "capacity", "system", "energy", "latency", "alternatives",
               "info"}
    extra = set(raw) - allowed
    if extra:
        raise ProfileError(f"{path}: unknown table [{sorted(extra)[0]}] "
                           f"(known: {', '.join(sorted(allowed))})")

    figures: dict[str, Figure] = {}
    fmt_values = _section(raw, "formats", path, figures)
    cap = _section(raw, "capacity", path, figures)
    sysv = _section(raw, "system", path, figures)
    energy = _section(raw, "energy", path, figures)
    latency = _section(raw, "latency", path, figures)

    formats = NumberFormats(**fmt_values)
    _check_formats(formats, path)
    capacity = Capacity(**cap)
    _check_capacity(capacity, path)
    system = System(**sysv)
    if system.chips < 1:
        raise ProfileError(f"{path}: system.chips: must be at least 1, got {system.chips}")
    if system.chip_mesh[0] * system.chip_mesh[1] < system.chips:
        raise ProfileError(f"{path}: system.chip_mesh: {list(system.chip_mesh)} holds fewer than "
                           f"system.chips = {system.chips} chips")
    for section, costs in (("energy", energy), ("latency", latency)):
        for key, value in costs.items():
            if value is not None and value < 0:
                raise ProfileError(f"{path}: {section}.{key}: must not be negative, got {value}")

    alternatives = _free_tables(raw, path, figures)
    return HardwareProfile(
        name=meta["name"].strip(), description=" ".join(meta["description"].split()), kind=kind,
        path=path, formats=formats, capacity=capacity, system=system,
        energy=EventCosts(**energy), latency=EventCosts(**latency), figures=figures,
        alternatives=alternatives, _raw=raw)


def _check_formats(f: NumberFormats, path: Path) -> None:
    if f.arithmetic not in ARITHMETICS:
        raise ProfileError(f"{path}: formats.arithmetic: expected one of {', '.join(ARITHMETICS)}, "
                           f"got {f.arithmetic!r}")
    if f.graded_spikes and f.payload_bits in (None, 0):
        raise ProfileError(f"{path}: formats.payload_bits: must be positive when graded_spikes = true")
    if f.arithmetic != LAVA_ARITHMETIC:
        return
    for fl in fields(NumberFormats):
        if getattr(f, fl.name) is None:
            raise ProfileError(f"{path}: formats.{fl.name}: must be known for arithmetic = "
                               f"\"{LAVA_ARITHMETIC}\"")
    positive = ("weight_bits", "state_bits", "decay_bits", "vth_bits", "bias_mant_bits",
                "bias_exp_bits", "a_in_bits", "container_bits", "conv_out_bits")
    for name in positive:
        value = getattr(f, name)
        if not 0 < value < 63:
            raise ProfileError(f"{path}: formats.{name}: must be in 1..62, got {value}")
    if f.decay_unity != 1 << f.decay_bits:
        raise ProfileError(f"{path}: formats.decay_unity: must be 2**decay_bits = "
                           f"{1 << f.decay_bits}, got {f.decay_unity}")
    if f.weight_exp_min > f.weight_exp_max:
        raise ProfileError(f"{path}: formats.weight_exp_min: {f.weight_exp_min} exceeds "
                           f"weight_exp_max = {f.weight_exp_max}")
    if f.state_bits > f.container_bits or f.a_in_bits > f.container_bits:
        raise ProfileError(f"{path}: formats.container_bits: {f.container_bits} is narrower than "
                           "state_bits or a_in_bits")


def _check_capacity(c: Capacity, path: Path) -> None:
    for fl in fields(Capacity):
        value = getattr(c, fl.name)
        if isinstance(value, int) and not isinstance(value, bool) and value < 0:
            raise ProfileError(f"{path}: capacity.{fl.name}: must not be negative, got {value}")
    if c.cores_per_chip < 1 or c.neurons_per_core < 1:
        raise ProfileError(f"{path}: capacity.cores_per_chip and neurons_per_core must be positive")
    for name in ("cores_per_tile", "input_axons_per_core",
                 "output_axons_per_core", "synaptic_memory_bits_per_core",
                 "max_neurons_per_chip", "max_synapses_per_chip"):
        if getattr(c, name) == 0:
            raise ProfileError(f"{path}: capacity.{name}: must be positive (or mark the figure "
                               "status = \"unknown\"), got 0")
    if c.tile_mesh is not None and c.cores_per_tile is not None:
        cores = c.tile_mesh[0] * c.tile_mesh[1] * c.cores_per_tile
        if cores < c.cores_per_chip:
            raise ProfileError(f"{path}: capacity.tile_mesh: {list(c.tile_mesh)} tiles x "
                               f"{c.cores_per_tile} cores hold fewer than cores_per_chip = "
                               f"{c.cores_per_chip}")


def _free_tables(raw: dict, path: Path, figures: dict[str, Figure]) -> dict[str, str]:
    """Parse ``[alternatives.NAME]`` and ``[info]``: any figures, each with a source."""
    alternatives: dict[str, str] = {}
    alts = raw.get("alternatives", {})
    if not isinstance(alts, dict):
        raise ProfileError(f"{path}: alternatives: must be a table of tables")
    for name, alt in alts.items():
        if not isinstance(alt, dict) or not isinstance(alt.get("description"), str):
            raise ProfileError(f"{path}: alternatives.{name}.description: missing field")
        alternatives[name] = " ".join(alt["description"].split())
        for sub in ("energy", "latency"):
            table = alt.get(sub, {})
            if not isinstance(table, dict):
                raise ProfileError(f"{path}: alternatives.{name}.{sub}: must be a table")
            inherited = {k: table.get(k, alt.get(k)) for k in _SECTION_META if k in table or k in alt}
            for key, item in table.items():
                if key in _SECTION_META:
                    continue
                where = f"alternatives.{name}.{sub}.{key}"
                figures[where] = _figure(item, inherited, where, path, _FLOAT)
    info = raw.get("info", {})
    if not isinstance(info, dict):
        raise ProfileError(f"{path}: info: must be a table")
    for key, item in info.items():
        if key in _SECTION_META:
            continue
        figures[f"info.{key}"] = _figure(item, info, f"info.{key}", path, None)
    return alternatives


# ----------------------------------------------------------------------------- loading

def profiles_dir() -> Path:
    """Directory of the shipped profiles: ``$SPIKEC_PROFILES_DIR`` when set, else the package
    data of ``spikec.hardware_profiles`` (the checkout's ``hardware_profiles/``, mapped into the
    package), found through ``importlib.resources`` in an editable install and a wheel alike."""
    env = os.environ.get("SPIKEC_PROFILES_DIR")
    if env:
        return Path(env)
    from importlib import resources

    try:
        return Path(str(resources.files("spikec.hardware_profiles")))
    except ModuleNotFoundError:
        # an editable install made before hardware_profiles/ was mapped into the package (its
        # import finder does not know it; scripts/setup.sh reinstalls): the checkout's folder
        import spikec

        return Path(spikec.__file__).resolve().parent.parent / "hardware_profiles"


def list_profiles() -> list[str]:
    """Names of the shipped profiles, sorted."""
    d = profiles_dir()
    return sorted(p.stem for p in d.glob("*.toml")) if d.is_dir() else []


def _read_toml(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ProfileError(f"{path}: profile file not found") from None
    except tomllib.TOMLDecodeError as e:
        raise ProfileError(f"{path}: not valid TOML: {e}") from None
    except UnicodeDecodeError as e:
        raise ProfileError(f"{path}: not UTF-8 text (byte {e.start}); a profile is a UTF-8 "
                           "TOML file") from None
    except IsADirectoryError:
        raise ProfileError(f"{path}: a folder, not a profile file") from None
    except OSError as e:
        raise ProfileError(f"{path}: cannot read profile: {e.strerror}") from None


def _merge(base: dict, top: dict) -> dict:
    """Tables of ``top`` override those of ``base`` field by field."""
    out = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "profile":
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _find(name: str, near: Path | None) -> Path:
    candidates = [near / f"{name}.toml"] if near is not None else []
    candidates.append(profiles_dir() / f"{name}.toml")
    for c in candidates:
        if c.is_file():
            return c
    known = ", ".join(list_profiles()) or "none"
    raise ProfileError(f"unknown hardware profile {name!r} (known: {known}); "
                       "pass a .toml path to use your own")


def _load_raw(path: Path, seen: tuple[Path, ...]) -> dict:
    if path in seen:
        raise ProfileError(f"{path}: profile.extends: circular ({' -> '.join(map(str, seen))})")
    raw = _read_toml(path)
    meta = raw.get("profile", {})
    parent = meta.get("extends") if isinstance(meta, dict) else None
    if parent is None:
        return raw
    if not isinstance(parent, str):
        raise ProfileError(f"{path}: profile.extends: expected a profile name, got {parent!r}")
    base = _load_raw(_find(parent, path.parent), seen + (path,))
    return _merge(base, raw)


def load_profile(name_or_path: str | os.PathLike) -> HardwareProfile:
    """Load and validate a profile by name (``"loihi2"``) or by path (``"my_chip.toml"``).

    Raises
    ------
    ProfileError
        One line naming the file and the field that is missing or malformed.
    """
    s = os.fspath(name_or_path)
    is_path = s.endswith(".toml") or os.sep in s or (os.altsep and os.altsep in s)
    path = Path(s) if is_path else _find(s, None)
    path = path.resolve() if path.exists() else path
    return _build(_load_raw(path, ()), path)
