"""Training-audio augmentation (drax/data/augment.py): every effect does what it says, each
utterance's chain is a function of its id and the seed, and the recipe key is checked."""
import numpy as np
import pytest
import soundfile as sf

from drax.data import augment as aug
from drax.data.audio import SAMPLE_RATE
from drax.data.kaldi_dir import Utterance, read_data_dir, write_data_dir
from drax.options import load_options


def tone(seconds=1.0, freq=440.0):
    t = np.arange(int(SAMPLE_RATE * seconds)) / SAMPLE_RATE
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def band_energy(x, low, high=None):
    spectrum = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / SAMPLE_RATE)
    return spectrum[(f >= low) & (f < (high or np.inf))].sum() / spectrum.sum()


def test_noise_reaches_the_asked_snr_and_colour():
    rng = np.random.default_rng(0)
    x = tone()
    for snr in (0.0, 10.0, 25.0):
        noise = aug.coloured_noise(len(x), 1.0, rng)
        y = aug.add_noise(x, noise, snr)
        measured = 10 * np.log10(np.mean(x**2) / np.mean((y - x) ** 2))
        assert abs(measured - snr) < 0.01
    white, brown = (aug.coloured_noise(SAMPLE_RATE, e, rng) for e in (0.0, 2.0))
    assert band_energy(brown, 0, 200) > 0.5 > band_energy(white, 0, 200)  # 1/f^2 sits at the bottom


def test_telephone_band_leaves_no_energy_above_4khz():
    rng = np.random.default_rng(1)
    x = aug.coloured_noise(SAMPLE_RATE, 0.0, rng).astype(np.float32) * 0.1
    assert band_energy(x, 4200) > 0.4
    y = aug.telephone(x)
    assert len(y) == len(x) and band_energy(y, 4200) < 1e-3


def test_reverb_adds_a_tail_and_keeps_the_level():
    x = np.zeros(SAMPLE_RATE, dtype=np.float32)
    x[1000:2000] = tone(1000 / SAMPLE_RATE, 300) / 0.3
    y = aug.reverb(x, 0.5, np.random.default_rng(2))
    assert len(y) == len(x) + int(0.5 * SAMPLE_RATE) - 1
    assert np.abs(y[2500:6000]).max() > 0.01  # energy after the dry sound ended
    assert abs(np.sqrt(np.mean(y**2)) / np.sqrt(np.mean(x**2)) - 1) < 0.01


def test_gain_and_codec():
    x = tone()
    assert np.allclose(aug.gain(x, 6.0), np.clip(x * 10 ** 0.3, -1, 1))
    assert np.abs(aug.gain(x, 20.0)).max() <= 1.0
    y = aug.codec(x, 0.9)
    assert y.shape == x.shape and 0 < np.abs(y - x).max()
    assert np.corrcoef(x[2000:-2000], y[2000:-2000])[0, 1] > 0.9


def test_augment_set_is_deterministic_and_replaces_a_share(tmp_path):
    src = tmp_path / "train"
    utts = []
    for i in range(40):
        path = tmp_path / "wav" / f"u{i}.flac"
        path.parent.mkdir(exist_ok=True)
        sf.write(path, tone(0.5, 200 + 20 * i), SAMPLE_RATE)
        utts.append(Utterance(f"u{i:02d}", "spk", str(path), "text", "en", 0.5))
    write_data_dir(str(src), utts)
    conf = load_options(aug.AugmentConfig, {"prob": 0.5, "reverb": 1.0, "seed": 3}, "augment_conf")
    first = aug.augment_set(src, tmp_path / "a", conf)
    second = aug.augment_set(src, tmp_path / "b", conf)
    assert first == second and 10 < len(first) < 30 and all("reverb" in e for e in first.values())
    for u in read_data_dir(str(tmp_path / "a")):
        audio = sf.read(u.wav)[0]
        assert np.array_equal(audio, sf.read(u.wav.replace("/a/", "/b/"))[0])
        assert (u.utt_id in first) == (len(audio) > 0.5 * SAMPLE_RATE)  # the reverberation tail
    other = aug.augment_set(src, tmp_path / "c", load_options(aug.AugmentConfig, {"prob": 0.5, "seed": 4}, "augment_conf"))
    assert set(other) != set(first)


@pytest.mark.parametrize("conf,message", [
    ({"prob": 1.5}, "augment_conf key prob: 1.5 must be a probability"),
    ({"snr_db": [30, 5]}, r"augment_conf key snr_db: \[30, 5\] must be \[low, high\]"),
    ({"echo": 0.1}, r"unknown augment_conf key\(s\) \['echo'\]"),
])
def test_bad_augment_conf_names_the_key(conf, message):
    from drax.recipe.config import RecipeError, load_recipe

    with pytest.raises(RecipeError, match=message):
        load_recipe(None, {"augment_conf": str(conf)})


def test_bad_audio_is_a_listed_skip_kept_as_it_was(tmp_path):
    """Audio stage 1 kept but that cannot be augmented (too short or long, NaN, truncated, not audio:
    sox fails) used to end stage 2; each is now a skip listed in the output's `skipped`."""
    from drax.data.audio import MAX_SECONDS
    from drax.data.kaldi_dir import read_kv_dict

    wav = tmp_path / "wav"
    wav.mkdir()
    utts = []
    for i in range(6):
        sf.write(wav / f"good{i}.flac", tone(0.5, 300 + 50 * i), SAMPLE_RATE)
        utts.append(Utterance(f"spk-good{i}", "spk", str(wav / f"good{i}.flac"), "text", "en", 0.5))
    nan = tone(0.5)
    nan[100] = np.nan
    bad = {"short": tone(0.01), "long": tone(MAX_SECONDS + 1), "nan": nan, "truncated": tone(1.0)}
    for name, audio in bad.items():
        sf.write(wav / f"{name}.wav", audio, SAMPLE_RATE, subtype="FLOAT")
    truncated = wav / "truncated.wav"
    truncated.write_bytes(truncated.read_bytes()[:20000])
    (wav / "notaudio.wav").write_bytes(b"RIFF but nothing of a wave")
    for name in [*bad, "notaudio"]:
        utts.append(Utterance(f"spk-{name}", "spk", str(wav / f"{name}.wav"), "text", "en", 0.5))
    write_data_dir(str(tmp_path / "train"), utts)

    aug.speed_perturb(tmp_path / "train", tmp_path / "train_sp", [0.9, 1.0])
    sp_skipped = read_kv_dict(str(tmp_path / "train_sp" / "skipped"))
    assert set(sp_skipped) == {"sp0.9-spk-notaudio"} and sp_skipped["sp0.9-spk-notaudio"].startswith("sox: ")
    assert len(read_data_dir(str(tmp_path / "train_sp"))) == 2 * len(utts) - 1

    conf = load_options(aug.AugmentConfig, {"prob": 1.0, "seed": 0}, "augment_conf")
    applied = aug.augment_set(tmp_path / "train", tmp_path / "train_aug", conf)
    skipped = read_kv_dict(str(tmp_path / "train_aug" / "skipped"))
    assert set(skipped) == {f"spk-{name}" for name in [*bad, "notaudio"]}
    assert set(applied) == {f"spk-good{i}" for i in range(6)}
    assert "shorter than" in skipped["spk-short"] and "over" in skipped["spk-long"] and "NaN" in skipped["spk-nan"]
    kept = {u.utt_id: u.wav for u in read_data_dir(str(tmp_path / "train_aug"))}
    assert len(kept) == len(utts) and all(kept[utt] == str(wav / f"{utt[4:]}.wav") for utt in skipped)
