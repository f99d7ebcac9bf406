"""``spikec report OUT``: a self-contained page, checked as HTML and rendered in headless Chromium
(scripts/install_browser.sh installs it; the Chromium test is skipped, with its reason, without)."""
from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser

import pytest

from spikec.cli import main
from spikec.errors import InputFileError
from spikec.estimate import estimate
from spikec.htmlreport import render, write_report
from spikec.target.profile import load_profile

from test_estimate import conv_net


def _report() -> dict:
    layers = [
        {"name": "c1", "op": "conv_synapse", "neurons": 0, "spikes": 0, "synaptic_events": 900.0,
         "input_events": 64.0, "firing_rate": None, "spike_agreement": None},
        {"name": "l1", "op": "cuba_lif", "neurons": 256, "spikes": 30.0, "synaptic_events": 0,
         "firing_rate": 0.03, "spike_agreement": 0.998},
        {"name": "d2", "op": "dense_synapse", "neurons": 0, "spikes": 0,
         "synaptic_events": 80.0, "input_events": 10.0, "firing_rate": None,
         "spike_agreement": None},
        {"name": "l2", "op": "cuba_lif", "neurons": 128, "spikes": 12.0, "synaptic_events": 0,
         "firing_rate": 0.023, "spike_agreement": 1.0},
    ]
    est = estimate(conv_net(), load_profile("loihi2")).to_json()
    return {"spikec_version": "0.1.0", "target": "loihi2", "model": "toy.pt", "timesteps": 4,
            "accuracy": {"float": 0.91, "folded": 0.91, "quantized": 0.905, "samples": 200},
            "data": {"spec": "mnist5k:test", "samples": 200}, "event_counts": "per_sample",
            "layers": layers, "totals": {"spikes": 42.0}, "notes": ["a <note> & more"],
            "estimate": json.loads(json.dumps(est, default=float))}


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[str] = []
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for k, v in attrs:
            if k in ("src", "href", "xlink:href") or (v and "url(" in v):
                self.urls.append(v)


def test_page_is_self_contained_with_plots_and_tables(tmp_path):
    page = render(_report())
    p = _Collect()
    p.feed(page)
    assert p.tags.count("svg") == 7  # accuracy, firing rate, SOPs, utilization, cores, energy x2
    assert "script" not in p.tags and "link" not in p.tags and "img" not in p.tags
    assert p.urls == [] and "http" not in page
    assert "Accuracy per pipeline stage" in page and "Mapping per layer" in page
    assert "a &lt;note&gt; &amp; more" in page


def test_report_command_writes_report_html(tmp_path, capsys):
    (tmp_path / "report.json").write_text(json.dumps(_report()))
    main(["report", str(tmp_path)])
    assert capsys.readouterr().out.strip() == str(tmp_path / "report.html")
    assert (tmp_path / "report.html").read_text().startswith("<!DOCTYPE html>")
    # a report without counts, accuracy or estimate still renders
    (tmp_path / "report.json").write_text(json.dumps({"model": "m", "layers": []}))
    assert "No estimate yet" in write_report(tmp_path).read_text()
    with pytest.raises(InputFileError, match="no report.json"):
        write_report(tmp_path / "missing")


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None, reason="chromium not installed "
                    "(bash scripts/install_browser.sh installs Debian's chromium)")
def test_page_renders_in_headless_chromium(tmp_path):
    (tmp_path / "report.json").write_text(json.dumps(_report()))
    page = write_report(tmp_path)
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--enable-logging=stderr", "--v=0"]
    with tempfile.TemporaryDirectory() as profile_dir:
        dom = subprocess.run([_chromium(), *flags, f"--user-data-dir={profile_dir}",
                              "--dump-dom", page.as_uri()],
                             capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    # the browser parsed the whole page: every plot and table is in its DOM
    assert dom.stdout.count("<svg") == 7 and dom.stdout.count("<rect") > 20
    assert "Mapping per layer" in dom.stdout
    console = [ln for ln in dom.stderr.splitlines() if "CONSOLE" in ln or "Uncaught" in ln]
    assert console == []
    shot = tmp_path / "shot.png"
    with tempfile.TemporaryDirectory() as profile_dir:
        r = subprocess.run([_chromium(), *flags, f"--user-data-dir={profile_dir}",
                            "--window-size=1200,2000", f"--screenshot={shot}", page.as_uri()],
                           capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 20_000  # a blank page compresses to a few KB
