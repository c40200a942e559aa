"""Transcription of any recording (drax/transcribe, drax/bin/transcribe.py): audio formats, windows of
long recordings at their pauses, the writers parsed back by real parsers, the API and the CLI."""
import json

import av
import numpy as np
import pytest
import soundfile as sf
import srt
import torch
import webvtt
import yaml

from drax.data.audio import SAMPLE_RATE, load_audio
from drax.transcribe import MANIFEST, Segment, Transcription, load
from drax.transcribe.windows import WINDOW_PAD, merge_regions, pad_windows, speech_windows
from drax.transcribe.writers import to_json, to_srt, to_vtt

from test_nets import PROMPT, TOKENS, tiny_whisper_dir  # noqa: F401  (a fixture)

RNG = np.random.default_rng(0)


def voiced(seconds: float, rate: int = SAMPLE_RATE) -> np.ndarray:
    """Speech-like sound: noise under a 4 Hz syllable envelope."""
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * RNG.standard_normal(t.size) * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t) ** 2)).astype(np.float32)


def with_pauses(lengths, pause=1.2):
    """Voiced stretches of `lengths` seconds joined by `pause` s of faint noise; the (start, end) of each."""
    parts, spans, t = [], [], 0.0
    for seconds in lengths:
        parts += [voiced(seconds), (1e-4 * RNG.standard_normal(int(pause * SAMPLE_RATE))).astype(np.float32)]
        spans.append((t, t + seconds))
        t += seconds + pause
    return np.concatenate(parts), spans


SENTENCES = ["the weather was fine and we walked along the river to the old mill",
             "she bought three loaves of bread and a bottle of milk at the market",
             "the train to the city leaves every morning at half past seven",
             "my brother plays the piano better than anyone else in our family",
             "please remember to close the windows before you leave the house",
             "the children built a small wooden boat and sailed it on the lake",
             "our neighbours painted their front door bright green last summer",
             "he read the whole book in one night because he could not stop"]


def spoken_with_pauses(pause=1.2):
    """English sentences spoken by espeak-ng joined by `pause` s of silence; the (start, end) of each."""
    from drax.data.synthetic.speech import synthesize

    parts, spans, t = [], [], 0.0
    for sentence in SENTENCES:
        samples = synthesize(sentence, "en", 50, 150)[0].astype(np.float32) / 32768
        parts += [samples, np.zeros(int(pause * SAMPLE_RATE), dtype=np.float32)]
        spans.append((t, t + samples.size / SAMPLE_RATE))
        t += samples.size / SAMPLE_RATE + pause
    return np.concatenate(parts), spans


def tone(seconds=1.0, rate=SAMPLE_RATE, channels=1, hz=440.0):
    t = np.arange(int(seconds * rate)) / rate
    x = 0.5 * np.sin(2 * np.pi * hz * t).astype(np.float32)
    return np.stack([x] * channels, 1) if channels > 1 else x


def write_m4a(path, audio, rate):
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(audio[None].astype(np.float32), format="fltp", layout="mono")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def peak_hz(audio):
    spectrum = np.abs(np.fft.rfft(audio))
    return np.fft.rfftfreq(audio.size, 1 / SAMPLE_RATE)[spectrum.argmax()]


@pytest.mark.parametrize("suffix, rate, channels", [("wav", 16000, 1), ("flac", 44100, 1), ("mp3", 8000, 2),
                                                    ("ogg", 22050, 2), ("m4a", 24000, 1)])
def test_any_format_rate_and_channels_read_as_16k_mono(tmp_path, suffix, rate, channels):
    path = tmp_path / f"clip.{suffix}"
    if suffix == "m4a":  # libsndfile does not read it: FFmpeg (PyAV) does
        write_m4a(path, tone(2.0, rate), rate)
    else:
        sf.write(path, tone(2.0, rate, channels), rate)
    audio, fixes = load_audio(str(path), max_seconds=None)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(audio.size / SAMPLE_RATE - 2.0) < 0.1  # codecs pad a few ms
    assert abs(peak_hz(audio) - 440.0) < 5
    assert ("resampled" in fixes) == (rate != SAMPLE_RATE) and ("downmixed" in fixes) == (channels > 1)


def test_short_long_and_corrupt_files(tmp_path):
    sf.write(tmp_path / "short.wav", tone(0.2), SAMPLE_RATE)
    assert load_audio(str(tmp_path / "short.wav"))[0].size == int(0.2 * SAMPLE_RATE)
    sf.write(tmp_path / "long.wav", tone(31.0), SAMPLE_RATE)
    with pytest.raises(ValueError, match="over 30 s"):
        load_audio(str(tmp_path / "long.wav"))
    assert load_audio(str(tmp_path / "long.wav"), max_seconds=None)[0].size == 31 * SAMPLE_RATE
    (tmp_path / "bad.m4a").write_bytes(b"\x00\x01garbage" * 100)
    with pytest.raises(ValueError, match=r"unreadable audio .*bad\.m4a"):
        load_audio(str(tmp_path / "bad.m4a"), max_seconds=None)


def test_windows_merge_regions_up_to_the_limit_in_order():
    regions = [(0, 5), (7, 12), (13, 29), (31, 40), (41, 80), (90, 95)]
    windows = merge_regions(regions, 30)
    assert windows == [(0, 29), (31, 40), (41, 80), (90, 95)]  # a longer region (41, 80) stays whole
    assert merge_regions(regions, 0) == regions
    assert all(a[1] <= b[0] for a, b in zip(windows, windows[1:]))


@pytest.mark.parametrize("seed", range(20))
def test_padded_windows_take_only_their_share_of_the_pauses(seed):
    rng = np.random.default_rng(seed)
    edges = np.sort(rng.choice(np.arange(1, 400), size=2 * int(rng.integers(1, 8)), replace=False))
    windows = [(int(a), int(b)) for a, b in edges.reshape(-1, 2)]
    total, longest, pad = 400 + int(rng.integers(0, 20)), int(rng.integers(60, 200)), int(rng.integers(0, 40))
    windows = [(s, min(e, s + longest)) for s, e in windows]
    padded = pad_windows(windows, pad, total, longest)
    assert len(padded) == len(windows)
    for (s, e), (ps, pe) in zip(windows, padded):
        assert ps <= s and e <= pe and s - ps <= pad and pe - e <= pad  # the window kept, at most `pad` more a side
        assert pe - ps <= max(longest, e - s)
    assert padded[0][0] >= 0 and padded[-1][1] <= total
    for (s, e), (s2, _), (_, pe), (ps2, _) in zip(windows, windows[1:], padded, padded[1:]):
        middle = (e + s2) // 2  # neighbours never overlap: each takes at most its half of the pause
        assert pe <= middle <= ps2
    assert pad_windows(windows, 0, total, longest) == windows
    assert pad_windows([(100, 150)], 30, 400, 1000) == [(70, 180)]
    assert pad_windows([(100, 150), (160, 200)], 30, 400, 1000) == [(70, 155), (155, 230)]
    with pytest.raises(ValueError, match="window_pad"):
        speech_windows(np.zeros(40 * SAMPLE_RATE, dtype=np.float32), "energy", pad_seconds=-0.1)

@pytest.mark.parametrize("vad", ["energy", "silero"])
def test_a_long_recording_is_cut_at_its_pauses(vad):
    # energy: 61 s of voiced noise in 73 s; silero (a speech detector): about 40 s of espeak-ng speech
    audio, spans = with_pauses([8, 12, 9, 14, 7, 11]) if vad == "energy" else spoken_with_pauses()
    assert audio.size > 35 * SAMPLE_RATE
    windows = speech_windows(audio, vad)
    assert all(w.start == w.speech_start and w.end == w.speech_end for w in windows)  # no pad: they read speech
    windows = [(w.start, w.end) for w in windows]
    assert 2 <= len(windows) <= 4 and all(e - s <= 30 * SAMPLE_RATE for s, e in windows)
    for start, end in windows:  # every window starts and ends within 0.5 s of a pause, never inside a stretch
        for a, b in ((start / SAMPLE_RATE, 1), (end / SAMPLE_RATE, 0)):
            assert any(abs(a - span[1 - b]) < 0.5 for span in spans), (vad, a, spans)
    covered = [any(s / SAMPLE_RATE - 0.5 <= lo and hi <= e / SAMPLE_RATE + 0.5 for s, e in windows) for lo, hi in spans]
    assert all(covered)
    n = 20 * SAMPLE_RATE
    assert speech_windows(audio[:n], vad, pad_seconds=0.6) == [(0, n, 0, n)]  # short: one window, whole


def test_writers_parse_back():
    result = Transcription(path="talk.wav", text="hello there. é 中文", language="en", duration=75.5,
                           segments=[Segment(0.25, 29.9, "hello there."), Segment(31.0, 3725.125, "é 中文")])
    subs = list(srt.parse(to_srt(result)))
    assert [s.content for s in subs] == ["hello there.", "é 中文"]
    assert subs[1].start.total_seconds() == 31.0 and subs[1].end.total_seconds() == 3725.125
    captions = webvtt.from_string(to_vtt(result))
    assert [c.text for c in captions] == ["hello there.", "é 中文"] and captions[1].end == "01:02:05.125"
    assert json.loads(to_json(result)) == result.as_dict()


@pytest.fixture
def tiny_exp(tmp_path, tiny_whisper_dir):  # noqa: F811
    """A recipe-like experiment directory: a small random causal Drax on a tiny Whisper's states."""
    from espnet2.tasks.asr import ASRTask

    conf = {"token_list": list(TOKENS), "token_type": "word", "input_size": 32, "frontend": None, "frontend_conf": {},
            "specaug": None, "specaug_conf": {}, "normalize": None, "normalize_conf": {}, "preencoder": None,
            "preencoder_conf": {}, "encoder": "precomputed", "encoder_conf": {}, "postencoder": None,
            "postencoder_conf": {}, "decoder": "dit",
            "decoder_conf": {"hidden_size": 16, "num_blocks": 1, "num_heads": 2, "time_embed_dim": 16,
                             "attention_block": 1, "shift_readout": True},
            "ctc_conf": {}, "model": "drax", "init": None,
            "model_conf": {"output_length": 10, "prompt_template": PROMPT, "eot_token": "<sos/eos>",
                           "canvas_margin": 0, "length_predictor": False,
                           "pmid_conf": {"hidden_size": 16, "num_heads": 2}}}
    import argparse

    torch.manual_seed(0)
    model = ASRTask.build_model(argparse.Namespace(**conf))
    for p in model.decoder.parameters():
        torch.nn.init.normal_(p, std=0.5)
    exp = tmp_path / "exp" / "asr_tiny"
    exp.mkdir(parents=True)
    (exp / "config.yaml").write_text(yaml.safe_dump(conf))
    torch.save(model.state_dict(), exp / "valid.loss.best.pth")
    (exp / MANIFEST).write_text(yaml.safe_dump({"units_dir": None, "whisper": str(tiny_whisper_dir),
                                                "decode": {"jump_order": "jacobi", "nfe": 8, "temperature": 0.0}}))
    return exp


def test_api_long_form_equals_per_window_decoding_and_reads_every_input_kind(tiny_exp, tmp_path, monkeypatch):
    model = load(tiny_exp)
    audio, _ = with_pauses([8, 12, 9, 14, 7, 11])
    sf.write(tmp_path / "long.flac", audio, SAMPLE_RATE)
    result = model.transcribe(str(tmp_path / "long.flac"), vad="energy", batch_size=3)
    windows = speech_windows(audio, "energy", model.max_window, merge_seconds=0, pad_seconds=WINDOW_PAD)
    speech = speech_windows(audio, "energy", model.max_window, merge_seconds=0)
    assert len(windows) == 6  # each stretch of speech its own window, taking in some of the pauses
    assert [(w.speech_start, w.speech_end) for w in windows] == [(w.start, w.end) for w in speech]
    assert all(w.start <= w.speech_start < w.speech_end <= w.end for w in windows)
    assert sum(w.end - w.start for w in windows) > sum(w.end - w.start for w in speech)
    # a segment is timed by its speech; the model reads the padded window
    assert [(s.start, s.end) for s in result.segments] == [(round(w.speech_start / SAMPLE_RATE, 3),
                                                            round(w.speech_end / SAMPLE_RATE, 3)) for w in windows]
    alone = [model.transcribe(audio[w.start:w.end], sample_rate=SAMPLE_RATE).text for w in windows]
    assert [s.text for s in result.segments] == alone and any(alone)
    assert result.language in ("en", "de") and abs(result.duration - audio.size / SAMPLE_RATE) < 1e-3
    shorter = model.transcribe(audio, sample_rate=SAMPLE_RATE, vad="energy", max_window=10.0, language="en")
    assert len(shorter.segments) > len(windows) and all(s.end - s.start <= 10.0 + 1e-6 for s in shorter.segments)

    stereo_8k = np.stack([tone(3.0, 8000), tone(3.0, 8000)], 1)
    (tmp_path / "dir").mkdir()
    sf.write(tmp_path / "dir" / "a.mp3", stereo_8k, 8000)
    sf.write(tmp_path / "dir" / "b.wav", tone(0.2), SAMPLE_RATE)
    (tmp_path / "dir" / "c.ogg").write_bytes(b"not audio")
    results = model.transcribe(str(tmp_path / "dir"), language="en")
    assert [r.path.rsplit("/", 1)[1] for r in results] == ["a.mp3", "b.wav", "c.ogg"]
    assert results[2].error and "c.ogg" in results[2].error and not results[2].segments
    assert all(r.error is None and r.language == "en" and len(r.segments) == 1 for r in results[:2])
    from_array = model.transcribe(stereo_8k, sample_rate=8000, language="en")
    assert from_array.text == results[0].text  # the same audio as an array: the same transcript
    monkeypatch.setattr("drax.transcribe.GROUP_SECONDS", 1.0)  # each recording decoded on its own: the same
    assert model.transcribe(str(tmp_path / "dir"), language="en") == results


def test_a_model_trained_with_the_language_given_needs_it(tiny_exp):
    config = yaml.safe_load((tiny_exp / "config.yaml").read_text())
    config["model_conf"]["lang_replace_prob"] = 0.0
    (tiny_exp / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(ValueError, match="pass language="):
        load(tiny_exp).transcribe(tone(1.0), sample_rate=SAMPLE_RATE)


def test_cli_writes_every_format_as_the_api_reads_and_counts_failures(tiny_exp, tmp_path, capsys):
    from drax.bin.transcribe import main

    sf.write(tmp_path / "one.wav", voiced(4.0), SAMPLE_RATE)
    (tmp_path / "broken.wav").write_bytes(b"RIFF1234WAVEjunk")
    status = main([str(tmp_path / "one.wav"), str(tmp_path / "broken.wav"), "--model", str(tiny_exp), "--language",
                   "en", "--output_format", "all", "--output_dir", str(tmp_path / "out"), "--nfe", "4"])
    assert status == 1  # one file failed; the other is written
    expected = load(tiny_exp, nfe=4).transcribe(str(tmp_path / "one.wav"), language="en")
    assert expected.text
    assert (tmp_path / "out" / "one.txt").read_text() == expected.text + "\n"
    assert json.loads((tmp_path / "out" / "one.json").read_text())["text"] == expected.text
    assert [s.content for s in srt.parse((tmp_path / "out" / "one.srt").read_text())] == [expected.text]
    assert [c.text for c in webvtt.read(str(tmp_path / "out" / "one.vtt"))] == [expected.text]
    assert not list((tmp_path / "out").glob("broken.*"))
    assert main([str(tmp_path / "one.wav"), "--model", str(tiny_exp), "--language", "en", "--nfe", "4"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == expected.text


def test_language_detection_reads_only_the_language_tokens_at_the_slot(tiny_exp):
    model = load(tiny_exp).s2t.model
    enc, lens = torch.randn(3, 20, 32), torch.tensor([20, 15, 9])
    with torch.no_grad():
        model.decoder.head.bias[TOKENS.index("<sos/eos>")] += 100.0  # the most probable token: not a language
        model.decoder.head.bias[TOKENS.index("<|de|>")] += 50.0
    assert model.detect_language(enc, lens) == ["de", "de", "de"]
    with torch.no_grad():
        model.decoder.head.bias[TOKENS.index("<|en|>")] += 100.0
    assert model.detect_language(enc, lens) == ["en", "en", "en"]


def test_bad_waveforms_silence_and_clashing_names(tiny_exp, tmp_path, caplog):
    from drax.bin.transcribe import main

    model = load(tiny_exp)
    with pytest.raises(ValueError, match="empty or holds NaN"):
        model.transcribe(np.full(SAMPLE_RATE, np.nan, dtype=np.float32), sample_rate=SAMPLE_RATE, language="en")
    silent = model.transcribe(np.zeros(40 * SAMPLE_RATE, dtype=np.float32), sample_rate=SAMPLE_RATE, language="en")
    assert silent.segments == [] and silent.text == "" and "no speech found" in caplog.text
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        sf.write(tmp_path / sub / "take.wav", tone(1.0), SAMPLE_RATE)
    with pytest.raises(SystemExit, match="several recordings named take"):
        main([str(tmp_path / "a"), str(tmp_path / "b"), "--model", str(tiny_exp), "--output_dir", str(tmp_path / "o")])


def test_the_transcriber_reads_audio_as_stage_3_dumped_it(tiny_exp, tiny_whisper_dir, tmp_path):  # noqa: F811
    """With silence appended before the encoder (recipe key encoder_trailing_silence), the states the
    transcriber computes from a file are those stage 3 dumped for it: it decodes what the model trained on."""
    import kaldiio

    from drax.data.features import dump_features
    from drax.data.kaldi_dir import Utterance, write_data_dir

    sf.write(tmp_path / "a.wav", voiced(2.0), SAMPLE_RATE)
    write_data_dir(str(tmp_path / "data"), [Utterance("a", "a", str(tmp_path / "a.wav"), "x", "en", 2.0)],
                   check_audio=False)
    manifest = yaml.safe_load((tiny_exp / MANIFEST).read_text())
    read = {}
    for silence in (0.0, 1.0):
        dump = tmp_path / f"dump{silence}"
        dump_features(tmp_path / "data", dump, whisper=str(tiny_whisper_dir), trailing_silence=silence)
        (tiny_exp / MANIFEST).write_text(yaml.safe_dump({**manifest, "encoder_trailing_silence": silence}))
        states, lengths = load(tiny_exp).encoder(torch.from_numpy(load_audio(str(tmp_path / "a.wav"))[0]))
        dumped = kaldiio.load_scp(str(dump / "dumped.scp"))["a"]
        torch.testing.assert_close(states[0], torch.from_numpy(dumped), rtol=1e-4, atol=1e-4)
        read[silence] = int(lengths[0])
    assert read == {0.0: 100, 1.0: 150}  # 50 states a second
