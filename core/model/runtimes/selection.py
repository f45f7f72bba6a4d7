"""Which runtime and precision embed: the fastest that keeps parity with torch fp32 here.

Parity is a gate, measured on the export's probe (photos with their torch fp32 embeddings,
see :mod:`core.model.runtimes.files`), so it needs no torch:

- the embeddings of every probe photo have cosine >= :data:`COSINE_MIN` with torch fp32's;
- for a model's head, its predictions from them agree with those from torch fp32's on
  >= :data:`AGREEMENT_MIN` of the probe photos (with 32 photos: on all of them).

The tests hold every runtime and precision to the full gate on the 340 shared photos
(these two plus validation accuracy). Each candidate is measured once per machine (speed
and parity) and the result is recorded in the home, beside the export, with the probe
embeddings each candidate gave, so later processes choose without running anything.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import pickle
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from core.config import Settings
from core.errors import ModelError
from core.model.head import LinearHead
from core.model.runtimes import (
    AUTO,
    EXPORTED_RUNTIMES,
    REFERENCE,
    RUNTIME_IDS,
    TORCH,
    Network,
    kind,
    runtime_module,
)
from core.model.runtimes.files import Export, atomic_write, cosines, writable_dir

log = logging.getLogger(__name__)

COSINE_MIN = 0.999
AGREEMENT_MIN = 0.995
TIMING_BATCH = 8


@dataclass(frozen=True)
class Candidate:
    """One runtime and precision as measured on this machine."""

    runtime: str
    precision: str
    min_cosine: float | None = None
    images_per_second: float | None = None  # network only, batch TIMING_BATCH
    error: str | None = None

    @property
    def kind(self) -> str:
        return kind(self.runtime, self.precision)

    @property
    def passed(self) -> bool:
        return self.error is None and (self.min_cosine or 0.0) >= COSINE_MIN

    def describe(self) -> str:
        if self.error is not None:
            return f"{self.kind}: failed ({self.error})"
        verdict = "keeps parity" if self.passed else "fails parity"
        return (
            f"{self.kind}: {self.images_per_second:.1f} img/s, min cosine "
            f"{self.min_cosine:.5f} ({verdict})"
        )


def candidate_runtimes(setting: str) -> list[str]:
    """The runtimes ``setting`` lets the selection try, those installed here."""
    wanted = [setting] if setting != AUTO else list(EXPORTED_RUNTIMES)
    installed = [rid for rid in wanted if runtime_module(rid).available()]
    if not installed and setting == AUTO and runtime_module(TORCH).available():
        installed = [TORCH]  # no exported runtime installed: the reference it is
    if not installed:
        raise ModelError(
            f"No inference runtime is installed for the setting runtime = {setting!r}: "
            f"install one of {', '.join(RUNTIME_IDS)} (pip install onnxruntime) or change "
            "the setting runtime (CLASSIFI_RUNTIME)."
        )
    return installed


def machine(threads: int | None) -> dict[str, Any]:
    """What a measurement depends on: a different machine or runtime version re-measures."""
    cpu = platform.processor()
    flags = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name") and not cpu:
                    cpu = line.split(":", 1)[1].strip()
                if line.startswith("flags"):
                    flags = " ".join(sorted(line.split(":", 1)[1].split()))
                    break
    except OSError:
        pass  # not Linux: the processor name and the core count stand for the machine
    versions: dict[str, str | None] = {}
    for runtime_id in RUNTIME_IDS:  # each runtime's package is named as its id
        try:
            versions[runtime_id] = importlib.metadata.version(runtime_id)
        except importlib.metadata.PackageNotFoundError:
            versions[runtime_id] = None
    return {
        "platform": platform.machine(),
        "cpu": cpu,
        "cpu_flags": flags,
        "cores": os.cpu_count(),
        "threads": threads,
        "versions": versions,
    }


@dataclass(frozen=True)
class Selection:
    """The measured candidates of one export on this machine, and the probe's reference."""

    setting: str
    export: Export
    network: Network  # what each candidate's engine is built from
    candidates: list[Candidate]
    reference: np.ndarray  # torch fp32 embeddings of the probe
    outputs: dict[str, np.ndarray]  # kind -> the probe embeddings a passing candidate gave
    measured_at: str

    @property
    def passing(self) -> list[Candidate]:
        """The candidates that keep parity, fastest first."""
        passed = [c for c in self.candidates if c.passed]
        return sorted(passed, key=lambda c: -(c.images_per_second or 0.0))

    @property
    def accepted_kinds(self) -> frozenset[str]:
        """Embeddings the cache may mix with this backbone's: torch fp32's and those of every
        candidate that keeps parity here."""
        return frozenset({REFERENCE, *(c.kind for c in self.passing)})

    def agreement(self, candidate: Candidate, head: LinearHead) -> float:
        """The share of probe photos ``head`` labels alike from ``candidate``'s embeddings
        and from torch fp32's."""
        expected = head.probabilities(self.reference).argmax(axis=1)
        got = head.probabilities(self.outputs[candidate.kind]).argmax(axis=1)
        return float((expected == got).mean())

    def choose(self, head: LinearHead | None = None) -> tuple[Candidate, str]:
        """The fastest candidate that keeps parity (for ``head``, when given), and why."""
        refused = [c.describe() for c in self.candidates if not c.passed]
        for candidate in self.passing:
            if head is not None and self.agreement(candidate, head) < AGREEMENT_MIN:
                refused.append(
                    f"{candidate.kind}: the model's predictions agree with torch fp32's on only "
                    f"{self.agreement(candidate, head):.1%} of the probe photos"
                )
                continue
            probe = self.export.record["probe"]
            reason = (
                f"{self.setting}: {candidate.describe()}; the fastest of "
                f"{len(self.candidates)} measured on this machine at {self.measured_at} that "
                f"keeps parity with torch fp32 (cosine >= {COSINE_MIN} on "
                f"{probe['photos']} {probe['source']} probe images)"
            )
            if refused:
                reason += "; refused: " + "; ".join(refused)
            return candidate, reason
        raise ModelError(
            f"No runtime keeps parity with torch fp32 for {self.export.record['backbone']} "
            f"(setting runtime = {self.setting!r}): {'; '.join(refused)}. Set runtime = "
            "'auto' or 'torch' (CLASSIFI_RUNTIME)."
        )

    def record(self) -> dict[str, Any]:
        return {
            "key": self.export.key,
            "setting": self.setting,
            "measured_at": self.measured_at,
            "candidates": [asdict(c) for c in self.candidates],
        }


def _record_paths(folder: Path, export: Export, setting: str) -> tuple[Path, Path]:
    # One record per setting: switching runtime = torch and back measures each only once.
    base = f"{export.stem}.{setting}.selection"
    return folder / f"{base}.json", folder / f"{base}.npz"


def _read(
    folder: Path, network: Network, export: Export, setting: str, here: dict[str, Any]
) -> Selection | None:
    record_path, outputs_path = _record_paths(folder, export, setting)
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
        if (record["key"], record["setting"], record["machine"]) != (export.key, setting, here):
            return None
        with np.load(outputs_path) as saved:
            outputs = {name.replace("-", "/", 1): saved[name] for name in saved.files}
        candidates = [Candidate(**fields) for fields in record["candidates"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None  # absent or unreadable: measure again
    _inputs, reference = export.probe(network.backbone_module.PREPROCESSING)
    # Another export of the same key (a shipped one, a home's own) probes other photos: its
    # record's embeddings are no answer to this probe.
    for embeddings in outputs.values():
        if embeddings.shape != reference.shape or cosines(embeddings, reference).min() < COSINE_MIN:
            return None
    return Selection(
        setting, export, network, candidates, reference, outputs, record["measured_at"]
    )


def _write(folder: Path, selection: Selection, here: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    record_path, outputs_path = _record_paths(folder, selection.export, selection.setting)

    def write_outputs(path: Path) -> None:
        with path.open("wb") as handle:
            arrays = {name.replace("/", "-"): a for name, a in selection.outputs.items()}
            np.savez(handle, allow_pickle=False, **arrays)

    atomic_write(outputs_path, write_outputs)
    record = {**selection.record(), "machine": here}
    atomic_write(
        record_path, lambda path: path.write_text(json.dumps(record, indent=2), encoding="utf-8")
    )


def _run_candidate(
    backbone_id: str,
    onnx: Path,
    scratch: Path,
    settings: Settings,
    runtime_id: str,
    precision: str,
    inputs: np.ndarray,
) -> tuple[float, np.ndarray]:
    """One candidate's rate (network only) and probe embeddings."""
    from core.model.backbones import backbone_module  # the table imports this module

    network = Network(backbone_id, onnx, scratch, backbone_module(backbone_id), settings)
    engine = runtime_module(runtime_id).load(network, precision, settings.inference_threads)
    engine.run(inputs[:TIMING_BATCH])  # warm-up: first runs allocate and tune
    start = time.perf_counter()
    outputs = np.concatenate(
        [
            engine.run(inputs[offset : offset + TIMING_BATCH])
            for offset in range(0, len(inputs), TIMING_BATCH)
        ]
    )
    return len(inputs) / (time.perf_counter() - start), outputs


def child_main() -> None:
    """The measuring child: arguments pickled on stdin, the result pickled into a file."""
    *arguments, result_path = pickle.load(sys.stdin.buffer)
    Path(result_path).write_bytes(pickle.dumps(_run_candidate(*arguments)))


_CHILD = "from core.model.runtimes.selection import child_main; child_main()"
MEASURE_TIMEOUT_S = 600.0


def _run_in_child(arguments: tuple[Any, ...]) -> tuple[float, np.ndarray]:
    """:func:`_run_candidate` in a child interpreter: a runtime that crashes on this machine
    (a native fault, as OpenVINO's bf16 once did on a random ViT here) takes only the child
    down. (Our own pickles, in and out: the child is this code.)"""
    import core

    root = str(Path(core.__file__).resolve().parents[1])  # where `core` is importable from
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, (root, os.environ.get("PYTHONPATH")))),
    }
    with tempfile.TemporaryDirectory(prefix="classifi-measure-") as folder:
        result = Path(folder) / "result.pickle"
        done = subprocess.run(
            [sys.executable, "-c", _CHILD],
            input=pickle.dumps((*arguments, str(result))),
            capture_output=True,
            env=env,
            timeout=MEASURE_TIMEOUT_S,
        )
        if done.returncode != 0:
            lines = done.stderr.decode(errors="replace").strip().splitlines()
            if done.returncode < 0:
                raise RuntimeError(f"crashed (signal {-done.returncode}) while running")
            raise RuntimeError(lines[-1] if lines else f"exited with {done.returncode}")
        rate, outputs = pickle.loads(result.read_bytes())
    return float(rate), outputs


def measure(
    runtime_id: str, precision: str, network: Network, inputs: np.ndarray, reference: np.ndarray
) -> tuple[Candidate, np.ndarray | None]:
    """One candidate's speed (network only) and parity on the probe, in a child process
    (in-process in a bundled app, which has no interpreter to start)."""
    arguments = (
        network.backbone_id, network.onnx, network.scratch, network.settings,
        runtime_id, precision, inputs,
    )  # fmt: skip
    try:
        if getattr(sys, "frozen", False):
            rate, outputs = _run_candidate(*arguments)
        else:
            rate, outputs = _run_in_child(arguments)
    except Exception as exc:  # one candidate's failure (a missing kernel...) leaves the others
        error = (str(exc).splitlines() or [type(exc).__name__])[0][:300]
        log.warning("runtime %s/%s cannot run here: %s", runtime_id, precision, error)
        return Candidate(runtime_id, precision, error=error), None
    worst = float(cosines(outputs, reference).min())
    return Candidate(runtime_id, precision, worst, rate), outputs


def select(network: Network, export: Export) -> Selection:
    """The recorded selection for this export, machine and setting, measuring it first if
    needed."""
    settings = network.settings
    setting = settings.runtime
    found = recorded(network, export)
    if found is not None:
        return found
    here = machine(settings.inference_threads)
    inputs, reference = export.probe(network.backbone_module.PREPROCESSING)
    home = writable_dir(settings)

    log.info("measuring the runtimes for %s on this machine (once)", export.stem)
    candidates, outputs = [], {}
    for runtime_id in candidate_runtimes(setting):
        for precision in runtime_module(runtime_id).precisions():
            candidate, produced = measure(runtime_id, precision, network, inputs, reference)
            candidates.append(candidate)
            if produced is not None and candidate.passed:
                outputs[candidate.kind] = produced
            log.info("  %s", candidate.describe())
    selection = Selection(
        setting,
        export,
        network,
        candidates,
        reference,
        outputs,
        datetime.now(UTC).replace(microsecond=0).isoformat(),
    )
    try:
        _write(home, selection, here)
    except OSError as exc:  # a read-only home measures again next time; it still works
        log.warning("cannot record the runtime selection in %s: %s", home, exc)
    return selection


def recorded(network: Network, export: Export) -> Selection | None:
    """The selection recorded for ``export`` on this machine and setting, without measuring."""
    settings = network.settings
    here = machine(settings.inference_threads)
    for folder in dict.fromkeys((writable_dir(settings), export.onnx.parent)):
        found = _read(folder, network, export, settings.runtime, here)
        if found is not None:
            return found
    return None


@dataclass(frozen=True)
class Parity:
    """The full gate of one candidate against torch fp32 on labelled photos."""

    min_cosine: float
    agreement: float  # share of photos the head labels alike from both embeddings
    accuracy: float  # the head's accuracy from the candidate's embeddings
    reference_accuracy: float  # ...and from torch fp32's

    @property
    def passed(self) -> bool:
        return (
            self.min_cosine >= COSINE_MIN
            and self.agreement >= AGREEMENT_MIN
            and self.accuracy >= self.reference_accuracy
        )


def parity(
    reference: np.ndarray, candidate: np.ndarray, head: LinearHead, targets: np.ndarray
) -> Parity:
    """The gate of ``candidate`` embeddings against torch fp32's ``reference`` of the same
    photos, whose label indices are ``targets`` (held out from ``head``'s training)."""
    expected = head.probabilities(reference).argmax(axis=1)
    got = head.probabilities(candidate).argmax(axis=1)
    return Parity(
        min_cosine=float(cosines(candidate, reference).min()),
        agreement=float((expected == got).mean()),
        accuracy=float((got == targets).mean()),
        reference_accuracy=float((expected == targets).mean()),
    )
