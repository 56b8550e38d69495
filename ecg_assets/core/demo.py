"""The embedded demo: small SYNTHETIC datasets written in real native layouts.

Nothing here is patient data. Waveforms come from a simple dipole model (Gaussian P, Q, R, S,
T waves projected onto the 12 lead axes) with class-dependent rhythm and morphology, so a
model can learn the classes:

- NORM: regular sinus rhythm, 55-95 bpm, P waves, narrow QRS.
- AF: irregular RR intervals, no P waves, 4-8 Hz fibrillatory baseline.
- MI: pathological Q waves, ST elevation and T inversion in an inferior or anterior territory.
- BBB: QRS widened to ~140 ms with a delayed terminal vector (right or left bundle pattern).
- OTHER: sinus brady/tachycardia, first-degree AV block or premature ventricular beats.

`demo_cinc2017` mimics the PhysioNet/CinC 2017 layout (single-lead `A*.mat`, 300 Hz, 9-30 s,
REFERENCE.csv with N/A/O/~). `demo_cinc2021` mimics CinC 2020/2021 (`.hea` + `.mat`, 12 leads,
500 Hz, 10 s, SNOMED codes in `# Dx:`), including a few multi-code records and one deliberately
truncated file that shows how unreadable records are reported.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io

from ecg_assets.core.signal import LEAD_ORDER

DEMO_SEED = 20240917
DEMO_DATASETS = ("demo_cinc2017", "demo_cinc2021")
MARKER_FILE = "SYNTHETIC_DEMO_DATA.txt"
GAIN_PER_MV = 1000.0

# Lead axes (x: left, y: inferior, z: anterior), a textbook approximation.
_LEAD_AXES = np.array(
    [
        [1.0, 0.0, 0.0],  # I
        [0.5, 0.87, 0.0],  # II
        [-0.5, 0.87, 0.0],  # III
        [-0.87, -0.5, 0.0],  # aVR
        [0.87, -0.5, 0.0],  # aVL
        [0.0, 1.0, 0.0],  # aVF
        [-0.45, 0.0, 0.89],  # V1
        [-0.1, 0.0, 1.0],  # V2
        [0.35, 0.0, 0.94],  # V3
        [0.7, 0.1, 0.7],  # V4
        [0.9, 0.15, 0.35],  # V5
        [1.0, 0.2, 0.0],  # V6
    ]
)


@dataclass(frozen=True)
class _Wave:
    offset_s: float  # relative to the R peak
    width_s: float  # Gaussian sigma
    vector: tuple[float, float, float]  # mV along x, y, z


_P = _Wave(-0.16, 0.022, (0.08, 0.12, 0.02))
_Q = _Wave(-0.028, 0.009, (-0.05, -0.05, 0.1))
_R = _Wave(0.0, 0.011, (0.7, 0.9, -0.35))
_S = _Wave(0.03, 0.011, (-0.25, -0.2, 0.3))
_T = _Wave(0.28, 0.05, (0.2, 0.25, -0.05))


def _beat_waves(kind: str, rng: np.random.Generator) -> list[_Wave]:
    """The waves of one sinus-conducted beat for a class (before per-record jitter)."""
    waves = [_P, _Q, _R, _S, _T]
    if kind == "AF":
        return [_Q, _R, _S, _T]
    if kind == "BBB":
        right = rng.random() < 0.5
        terminal = (-0.35, 0.05, 0.55) if right else (0.55, 0.1, -0.55)
        t_vector = (-0.12, -0.1, -0.15) if right else (-0.2, -0.2, 0.2)
        return [_P, _Wave(0.0, 0.02, _R.vector), _Wave(0.06, 0.022, terminal), _Wave(0.32, 0.06, t_vector)]
    if kind == "MI":
        territory = np.array((0.0, 1.0, 0.0)) if rng.random() < 0.5 else np.array((0.1, 0.0, 1.0))
        q_vector = tuple(-0.35 * territory)
        st_vector = tuple(0.2 * territory)
        t_vector = tuple(np.array(_T.vector) - 0.45 * territory)
        return [_P, _Wave(-0.03, 0.014, q_vector), _R, _S, _Wave(0.14, 0.07, st_vector), _Wave(0.3, 0.05, t_vector)]
    return waves


def _add_wave(out: np.ndarray, t: np.ndarray, fs: float, centre_s: float, wave: _Wave, scale: float) -> None:
    centre = centre_s + wave.offset_s
    lo = max(0, int((centre - 5 * wave.width_s) * fs))
    hi = min(len(t), int((centre + 5 * wave.width_s) * fs) + 1)
    if lo >= hi:
        return
    shape = np.exp(-0.5 * ((t[lo:hi] - centre) / wave.width_s) ** 2)
    out[:, lo:hi] += scale * np.outer(_LEAD_AXES @ np.asarray(wave.vector), shape)


def _rr_intervals(kind: str, subtype: str, seconds: float, rng: np.random.Generator) -> np.ndarray:
    if kind == "AF":
        mean_rr = 60.0 / rng.uniform(90, 150)
        rr = rng.gamma(shape=6.0, scale=mean_rr / 6.0, size=int(seconds / mean_rr) + 4)
        return np.clip(rr, 0.28, 1.6)
    bpm = {"brady": rng.uniform(38, 52), "tachy": rng.uniform(110, 145)}.get(subtype, rng.uniform(55, 95))
    return np.full(int(seconds * bpm / 60) + 4, 60.0 / bpm) * rng.normal(1.0, 0.02, int(seconds * bpm / 60) + 4)


def synthesize_ecg(kind: str, fs: float, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """A synthetic 12-lead ECG in mV, `[12, round(fs*seconds)]`, for a class in NORM/AF/MI/BBB/OTHER/NOISE."""
    n = int(round(fs * seconds))
    t = np.arange(n) / fs
    signal = np.zeros((len(LEAD_ORDER), n))
    subtype = str(rng.choice(["brady", "tachy", "avblock", "pvc"])) if kind == "OTHER" else ""
    waves = _beat_waves(kind, rng)
    if subtype == "avblock":
        waves = [_Wave(-0.29, _P.width_s, _P.vector)] + waves[1:]
    amplitude = rng.uniform(0.7, 1.3)
    beat_time = rng.uniform(0.1, 0.8)
    for rr in _rr_intervals(kind, subtype, seconds, rng):
        if beat_time > seconds + 0.5:
            break
        if subtype == "pvc" and rng.random() < 0.25:
            beat_time -= 0.3 * rr  # premature, wide, bizarre ventricular beat without P
            for wave in (_Wave(0.0, 0.04, (-0.6, 0.8, 0.6)), _Wave(0.3, 0.07, (0.3, -0.4, -0.3))):
                _add_wave(signal, t, fs, beat_time, wave, amplitude)
            beat_time += 1.3 * rr
            continue
        for wave in waves:
            _add_wave(signal, t, fs, beat_time, wave, amplitude * rng.normal(1.0, 0.03))
        beat_time += rr
    if kind == "AF":
        for frequency in rng.uniform(4, 8, size=3):
            phase = rng.uniform(0, 2 * np.pi)
            signal += np.outer(_LEAD_AXES @ np.array((0.02, 0.03, 0.05)), np.sin(2 * np.pi * frequency * t + phase))
    wander = 0.15 * np.sin(2 * np.pi * rng.uniform(0.1, 0.4) * t + rng.uniform(0, 6.3))
    noise_level = 0.4 if kind == "NOISE" else 0.02
    if kind == "NOISE":
        signal *= 0.2
        signal += np.cumsum(rng.normal(0, 0.05, size=(1, n)), axis=1)  # motion artefact
    return signal + wander + rng.normal(0, noise_level, size=signal.shape)


def _to_adc(signal_mv: np.ndarray) -> np.ndarray:
    return np.clip(np.round(signal_mv * GAIN_PER_MV), -32768, 32767).astype(np.int16)


def _write_cinc2017_style(folder: Path, rng: np.random.Generator, n_records: int = 200) -> None:
    classes = rng.choice(["N", "A", "O", "~"], size=n_records, p=[0.5, 0.2, 0.25, 0.05])
    kinds = {"N": "NORM", "A": "AF", "O": "OTHER", "~": "NOISE"}
    reference = []
    for number, code in enumerate(classes, start=1):
        name = f"A{number:05d}"
        seconds = float(rng.integers(9, 31))
        lead_i = synthesize_ecg(kinds[code], 300.0, seconds, rng)[0:1]
        scipy.io.savemat(folder / f"{name}.mat", {"val": _to_adc(lead_i)}, format="4")
        reference.append(f"{name},{code}\n")
    (folder / "REFERENCE.csv").write_text("".join(reference))


_SNOMED = {
    "NORM": ["426783006"],
    "AF": ["164889003", "164890007"],
    "MI": ["164865005", "57054005"],
    "BBB": ["59118001", "164909002", "713427006"],
    "OTHER": ["426177001", "427084000", "270492004", "427172004"],  # brady, tachy, 1st-degree AVB, PVC
}


def _header(name: str, signal_adc: np.ndarray, fs: int, comments: list[str]) -> str:
    lines = [f"{name} {signal_adc.shape[0]} {fs} {signal_adc.shape[1]}"]
    for lead, channel in zip(LEAD_ORDER, signal_adc):
        checksum = int(channel.astype(np.int64).sum() + 32768) % 65536 - 32768
        lines.append(f"{name}.mat 16x1+24 {GAIN_PER_MV:.1f}(0)/mV 16 0 {int(channel[0])} {checksum} 0 {lead}")
    return "\n".join(lines + [f"# {comment}" for comment in comments]) + "\n"


def _write_cinc2021_style(folder: Path, rng: np.random.Generator, n_records: int = 200) -> None:
    classes = rng.choice(["NORM", "AF", "MI", "BBB", "OTHER"], size=n_records, p=[0.3, 0.2, 0.15, 0.2, 0.15])
    for number, kind in enumerate(classes, start=1):
        name = f"Q{number:04d}"
        codes = [str(rng.choice(_SNOMED[kind]))]
        if kind in ("AF", "MI") and rng.random() < 0.15:
            codes.append(str(rng.choice(_SNOMED["BBB"])))  # multi-code record: priority decides
        adc = _to_adc(synthesize_ecg(kind, 500.0, 10.0, rng))
        scipy.io.savemat(folder / f"{name}.mat", {"val": adc}, format="4")
        comments = [f"Age: {int(rng.integers(20, 90))}", f"Sex: {rng.choice(['Male', 'Female'])}"]
        comments += [f"Dx: {','.join(codes)}", "Rx: Unknown", "Hx: Unknown", "Sx: Unknown"]
        (folder / f"{name}.hea").write_text(_header(name, adc, 500, comments))
    # One deliberately truncated signal file: reported as a failed record, never fatal.
    broken = folder / f"Q{n_records:04d}.mat"
    broken.write_bytes(broken.read_bytes()[:100])


_WRITERS = {"demo_cinc2017": _write_cinc2017_style, "demo_cinc2021": _write_cinc2021_style}


def ensure_demo_dataset(root: Path, name: str, seed: int = DEMO_SEED) -> Path:
    """Generate demo dataset `name` under `root` unless it is there; returns its folder.

    Generation is deterministic for a seed and atomic (built in a temporary folder, then
    renamed), so concurrent runs never see a half-written dataset.
    """
    if name not in _WRITERS:
        raise ValueError(f"unknown demo dataset {name!r}; expected one of {', '.join(DEMO_DATASETS)}")
    target = root / name
    if (target / MARKER_FILE).is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root))
    try:
        rng = np.random.default_rng([seed, DEMO_DATASETS.index(name)])
        _WRITERS[name](staging, rng)
        (staging / MARKER_FILE).write_text(
            "SYNTHETIC demo data generated by ecg_assets.core.demo: not recordings of real patients.\n"
            f"Layout: {name.removeprefix('demo_')} style. Seed: {seed}.\n"
        )
        try:
            os.rename(staging, target)
        except OSError:
            if not (target / MARKER_FILE).is_file():  # lost a race only if the winner finished
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
