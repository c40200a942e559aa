"""Speed perturbation (Ko et al. 2015, ESPnet/Kaldi's 0.9/1.0/1.1 convention) with sox."""
from __future__ import annotations

import subprocess
from pathlib import Path

from tqdm import tqdm

from drax.data.kaldi_dir import Utterance, read_data_dir, write_data_dir
from drax.fileio import atomic_path


def speed_perturb(src: Path, dst: Path, factors: list[float]) -> None:
    """Write `dst` with every utterance of `src` at each speed factor (ids and speakers prefixed sp<f>-)."""
    utts = read_data_dir(str(src))
    out = []
    wav_dir = Path(dst) / "wav"
    wav_dir.mkdir(parents=True, exist_ok=True)
    for factor in factors:
        for u in tqdm(utts, desc=f"speed {factor}", unit="utt", mininterval=5):
            if float(factor) == 1.0:
                out.append(u)
                continue
            prefix = f"sp{factor}-"
            path = wav_dir / f"{prefix}{u.utt_id}.flac"
            if not path.exists():
                with atomic_path(path, suffix=".flac") as tmp:  # sox reads the format from the extension
                    subprocess.run(["sox", u.wav, tmp, "speed", str(factor)], check=True, capture_output=True)
            out.append(Utterance(utt_id=prefix + u.utt_id, speaker=prefix + u.speaker, wav=str(path.resolve()),
                                 text=u.text, lang=u.lang,
                                 duration=None if u.duration is None else u.duration / float(factor)))
    write_data_dir(str(dst), out)
