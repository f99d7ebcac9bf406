"""The Python API: the CLI's verbs for a model that lives in the user's own code.

::

    import spikec
    net = MySNN()                                   # any nn.Module spikec can trace
    c = spikec.compile(net, target="loihi2", input_shape=(1, 28, 28), timesteps=4,
                       data="fashion-mnist:test", limit=100, calib="fashion-mnist:train")
    print(c.report()["accuracy"]); c.save("out")    # OUT as `spikec compile -o out` writes it
    c.simulate("fashion-mnist:test", limit=100); c.estimate("loihi2"); c.validate(against="lava")
    c = spikec.load("out")                          # and back

``spikec compile``, ``simulate``, ``estimate`` and ``validate`` run the same library functions
(``spikec.compiler``, ``spikec.evaluate``, ``spikec.estimate.driver``, ``spikec.validate``), so
the API and the CLI give the same numbers and byte-identical files.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from spikec.compiler import REPORT_FILE, CompileOutcome, compile_loaded, file_sha256
from spikec.errors import InputFileError
from spikec.evaluate import GRAPH_FILES, load_stage, simulate_graph
from spikec.outputs import MARKER, write_dir

__all__ = ["compile", "load", "Compiled"]


class Compiled:
    """A compiled model: the traced float graph, the folded graph, the fixed-point graph for the
    target, report.json and the target's bundle, in memory until ``save``.

    Attributes
    ----------
    graph, folded, fixed : spikec.ir.Graph
        The three stages (``simulate(stage=...)`` runs any of them).
    out : Path or None
        The directory it was saved to or loaded from.
    """

    def __init__(self, outcome: CompileOutcome):
        self._outcome = outcome
        self.graph, self.folded, self.fixed = outcome.graph, outcome.folded, outcome.fixed
        self.out = outcome.out

    def report(self) -> dict:
        """report.json's content (schema in ``spikec.report``)."""
        return self._outcome.report

    def save(self, out: str | os.PathLike, *, force: bool = False) -> Path:
        """Write the output directory ``spikec compile -o OUT`` writes (same rules: ``out`` is
        replaced only when empty or an earlier spikec output, unless ``force``)."""
        write_dir(out, self._outcome.files, force=force)
        self.out = Path(out)
        return self.out

    def simulate(self, data, *, limit: int | None = None, stage: str = "quantized",
                 batch_size: int = 32, strict: bool = False, workers: int = 1,
                 cluster: str | None = None) -> dict:
        """Run one stage on ``data`` (a spec such as ``"fashion-mnist:test"``, a ``.npz`` path, a
        ``spikec.data.Dataset`` or ``(images, labels)`` arrays): ``spikec simulate --json``'s
        result (accuracy, layers, totals, predictions); ``workers`` / ``cluster`` shard it
        (docs/scale-out.md)."""
        graph = {"float": self.graph, "folded": self.folded, "quantized": self.fixed}.get(stage)
        if graph is None and stage in GRAPH_FILES and self.out is not None:
            graph = load_stage(self.out, stage)
        if graph is None:
            raise InputFileError(f"stage {stage!r} is not available")
        return simulate_graph(graph, data, limit=limit, stage=stage, batch_size=batch_size,
                              strict=strict, workers=workers, cluster=cluster)

    def estimate(self, profile: str = "loihi2", *, chips: int | None = None, data=None,
                 limit: int | None = None, cost: str = "profile", rate: float = 0.1,
                 ssa: str | None = None, timing: str = "analytic") -> dict:
        """``spikec estimate --json``'s result for ``profile`` (cores, chips, energy, latency).
        Event counts from ``data`` when given, else from the compile's ``data``, else ``rate``;
        ``timing="cycle"`` (with ``data``) adds the cycle-level ``timing`` section.
        Raises ``CapacityError`` when the network cannot be mapped."""
        from spikec.estimate import driver

        inp = driver.prepare_graph(self.fixed, profile, report=self.report(), chips=chips,
                                   data_spec=data, limit=limit, ssa=ssa, timing=timing,
                                   cost=cost)
        return driver.estimate_one(inp, chips=chips, cost=cost, rate=rate)

    def validate(self, against: str = "lava", *, data=None, limit: int | None = None,
                 trace_file: str | os.PathLike | None = None, batch: int = 100) -> dict:
        """``spikec validate --json``'s result: the bundle run on Lava's CPU models (``lava``,
        with ``data``: a spec or ``.npz`` path) or a trace file (``trace``), compared with the
        bit-exact simulator. Works on the saved directory (a temporary one if not saved)."""
        from spikec.validate import validate_bundle

        if self.out is not None:
            return validate_bundle(self.out, against, data=data, limit=limit,
                                   trace_file=trace_file, batch=batch)
        with tempfile.TemporaryDirectory(prefix="spikec-api-") as tmp:
            out = Path(tmp) / "out"
            write_dir(out, self._outcome.files)
            return validate_bundle(out, against, data=data, limit=limit, trace_file=trace_file,
                                   batch=batch)


def compile(model, target: str = "loihi2", *, input_shape=None, timesteps: int | None = None,
            data=None, calib=None, limit: int | None = None, profile: str | None = None,
            residual: str = "auto", ssa: str = "host", arch: str | None = None,
            trust_pickle: bool = False, preprocess: dict | None = None,
            overrides: dict | None = None, batch_size: int = 32,
            input_encoding: str = "auto") -> Compiled:
    """Compile a model for ``target``, in memory (``spikec compile`` without writing OUT).

    Parameters
    ----------
    model : torch.nn.Module, or a path
        A model object from the user's code (traced as it is: put in eval mode, converted to
        float on the CPU, its ``T`` set to ``timesteps``), or a model file (checkpoint, .spkc,
        .nir, .onnx) as the CLI reads it.
    target : str
        ``loihi2`` (with a Lava bundle) or ``loihi``; ``profile`` (a TOML path) replaces it.
    input_shape : (C, H, W), optional
        Per-sample input shape; needed for a module that does not record ``spikec_config``.
    timesteps : int, optional
        T.
    data, calib : optional
        Evaluation and calibration sets: a spec (``"fashion-mnist:test"``, a ``.npz`` path), a
        ``spikec.data.Dataset``, or ``(images, labels)`` arrays (uint8 ``[N, C, H, W]``).
    limit : int, optional
        First N samples of ``data``.
    residual, ssa, arch, trust_pickle, preprocess, overrides, batch_size, input_encoding :
        As the CLI's ``--residual``, ``--ssa``, ``--arch``, ``--trust-pickle``,
        ``--preprocess`` (a dict), ``--set`` (a dict), ``--batch-size`` and
        ``--input-encoding``.
    """
    from spikec.frontends import LoadOptions, load_model, load_module

    options = LoadOptions(arch=arch, trust_pickle=trust_pickle,
                          input_shape=None if input_shape is None else tuple(input_shape),
                          timesteps=timesteps, overrides=dict(overrides or {}),
                          preprocess=preprocess)
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        graph = load_model(path, options)
        name, digest = path.name, file_sha256(path)
    else:
        from spikec.ir import dumps

        graph = load_module(model, options)
        # a model without a file: named by its class, hashed by its traced graph's bytes
        name = f"{type(model).__name__} (in memory)"
        digest = hashlib.sha256(dumps(graph)).hexdigest()
    outcome = compile_loaded(graph, name, digest, target=target, profile=profile, data=data,
                             calib=calib, limit=limit, residual=residual, batch_size=batch_size,
                             ssa=ssa, input_encoding=input_encoding)
    return Compiled(outcome)


def load(out: str | os.PathLike) -> Compiled:
    """A compile output directory (``spikec compile -o OUT``, ``Compiled.save``) as a
    ``Compiled``."""
    import json

    out = Path(out)
    fixed = load_stage(out, "quantized")
    folded = load_stage(out, "folded")
    graph = load_stage(out, "float")
    try:
        report = json.loads((out / REPORT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputFileError(f"{out / REPORT_FILE}: cannot read it ({e})") from None
    if not isinstance(report, dict):
        raise InputFileError(f"{out / REPORT_FILE}: not a JSON object")
    files = {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
             if p.is_file() and p.name != MARKER}
    return Compiled(CompileOutcome(report, out, fixed, folded, graph, files))
