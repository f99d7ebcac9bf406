"""Resource, energy and latency estimation: map a fixed-point graph onto the cores and chips of a
hardware profile, then cost its event counts (see docs/estimator.md).

Data flow: fixed graph -> ``extract_network`` (core layers, host units) -> ``map_network``
(partition, exact per-core resources, placement) -> event counts (simulator, report.json, or an
assumed rate) -> ``paper_energy`` / ``profile_energy`` / ``step_latency``.
"""
from spikec.estimate.estimator import SCHEMA, Estimate, estimate
from spikec.estimate.events import EventCounts, UnitEvents, assumed_counts, counts_from_report
from spikec.estimate.mapping import Mapping, map_network
from spikec.estimate.network import Network, extract_network
from spikec.estimate.partition import CoreLimits

__all__ = ["SCHEMA", "Estimate", "estimate", "EventCounts", "UnitEvents", "assumed_counts",
           "counts_from_report", "Mapping", "map_network", "Network", "extract_network",
           "CoreLimits"]
