"""Kaldi data dir writer / reader / validator (no audio synthesis needed)."""

import os

import pytest

from drax.data.kaldi_dir import DataDirError, Utterance, read_data_dir, read_kv_dict, validate_data_dir, write_data_dir


def _utts(tmp_path, n=4):
    audio = tmp_path / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        spk = f"spk{i % 2}"
        p = audio / f"{i}.flac"
        p.write_bytes(b"fake")
        out.append(Utterance(utt_id=f"{spk}-u{i:03d}", speaker=spk, wav=str(p),
                             text=f"hello world {i}", lang="en", duration=1.0 + i))
    return out


def _write_files(d, files):
    d.mkdir(parents=True, exist_ok=True)
    for name, lines in files.items():
        (d / name).write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def _good_dir(tmp_path):
    d = tmp_path / "data"
    write_data_dir(str(d), _utts(tmp_path))
    return d


def test_roundtrip(tmp_path):
    utts = _utts(tmp_path)
    d = tmp_path / "data"
    write_data_dir(str(d), reversed(utts))
    assert sorted(os.listdir(d)) == ["spk2utt", "text", "utt2dur", "utt2lang", "utt2spk", "wav.scp"]
    back = read_data_dir(str(d), check_audio=True)
    assert [u.utt_id for u in back] == sorted(u.utt_id for u in utts)
    assert {u.utt_id: (u.text, u.speaker, u.lang, u.duration) for u in back} == \
        {u.utt_id: (u.text, u.speaker, u.lang, u.duration) for u in utts}
    assert read_kv_dict(str(d / "spk2utt")) == {"spk0": "spk0-u000 spk0-u002",
                                                 "spk1": "spk1-u001 spk1-u003"}
    summary = validate_data_dir(str(d))
    assert summary["num_utts"] == 4 and summary["num_speakers"] == 2
    assert summary["total_dur"] == pytest.approx(1 + 2 + 3 + 4)
    assert summary["langs"] == {"en": 4}


def test_no_temp_files_and_stale_optional_removed(tmp_path):
    d = _good_dir(tmp_path)
    utts = [Utterance(u.utt_id, u.speaker, u.wav, u.text) for u in _utts(tmp_path)]
    write_data_dir(str(d), utts)  # no lang / duration this time
    assert sorted(os.listdir(d)) == ["spk2utt", "text", "utt2spk", "wav.scp"]


def test_writer_refuses_invalid(tmp_path):
    utts = _utts(tmp_path)
    utts[1].text = ""
    d = tmp_path / "data"
    with pytest.raises(DataDirError, match="empty text"):
        write_data_dir(str(d), utts)
    assert not d.exists() or not (d / "text").exists()  # nothing half-written
    utts = _utts(tmp_path)
    utts.append(utts[0])
    with pytest.raises(DataDirError, match="duplicate"):
        write_data_dir(str(d), utts)


def test_unsorted(tmp_path):
    d = _good_dir(tmp_path)
    lines = (d / "text").read_text().splitlines()
    lines[1], lines[2] = lines[2], lines[1]
    (d / "text").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataDirError, match=r"text:3: not sorted"):
        validate_data_dir(str(d))


def test_duplicate_id(tmp_path):
    d = _good_dir(tmp_path)
    lines = (d / "utt2spk").read_text().splitlines()
    lines.insert(1, lines[0])
    (d / "utt2spk").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataDirError, match=r"utt2spk:2: duplicate id 'spk0-u000'"):
        validate_data_dir(str(d))


@pytest.mark.parametrize("bad_id", ["spk0/../../x", ".hidden", "spk0\\u1"])
def test_unsafe_ids_are_refused(tmp_path, bad_id):
    utts = _utts(tmp_path)
    utts[0].utt_id = bad_id
    with pytest.raises(DataDirError, match="is not a safe file name"):
        write_data_dir(str(tmp_path / "data"), utts)


def test_non_utf8_line_names_file_and_line(tmp_path):
    d = _good_dir(tmp_path)
    with open(d / "text", "ab") as f:
        f.write("spk9-x Stra\u00dfe\n".encode("latin-1"))
    with pytest.raises(DataDirError, match=r"text:5: not UTF-8 .* iconv"):
        validate_data_dir(str(d))


def test_mismatched_ids(tmp_path):
    d = _good_dir(tmp_path)
    lines = (d / "utt2lang").read_text().splitlines()
    (d / "utt2lang").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(DataDirError, match=r"utt2lang: id 'spk1-u003' of wav.scp:4 missing"):
        validate_data_dir(str(d))
    d2 = _good_dir(tmp_path / "b")
    with open(d2 / "text", "a") as f:
        f.write("spk9-extra hi there\n")
    with pytest.raises(DataDirError, match=r"text:5: id 'spk9-extra' not in wav.scp"):
        validate_data_dir(str(d2))


def test_empty_text(tmp_path):
    d = _good_dir(tmp_path)
    lines = (d / "text").read_text().splitlines()
    lines[2] = lines[2].split(" ")[0]
    (d / "text").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataDirError, match=r"text:3: empty text for id 'spk1-u001'"):
        validate_data_dir(str(d))


def test_missing_audio(tmp_path):
    d = _good_dir(tmp_path)
    wav = read_kv_dict(str(d / "wav.scp"))["spk0-u002"]
    os.unlink(wav)
    with pytest.raises(DataDirError, match=r"wav.scp:2: audio file of 'spk0-u002' not found"):
        validate_data_dir(str(d))
    validate_data_dir(str(d), check_audio=False)  # the rest is fine


def test_pipe_and_relative_entries(tmp_path):
    d = tmp_path / "data"
    (tmp_path / "a.wav").write_bytes(b"x")
    _write_files(d, {
        "wav.scp": ["s1-a a.wav", "s1-b sox x.wav -t wav - |", "s2-c feats.ark:123"],
        "text": ["s1-a one", "s1-b two", "s2-c three"],
        "utt2spk": ["s1-a s1", "s1-b s1", "s2-c s2"],
    })
    (tmp_path / "feats.ark").write_bytes(b"x")
    validate_data_dir(str(d), audio_root=str(tmp_path))
    with pytest.raises(DataDirError, match="not found"):
        validate_data_dir(str(d), audio_root=str(d))


def test_speaker_not_contiguous_and_spk2utt(tmp_path):
    d = tmp_path / "data"
    for name in ("a.wav",):
        (tmp_path / name).write_bytes(b"x")
    w = str(tmp_path / "a.wav")
    _write_files(d, {
        "wav.scp": [f"u1 {w}", f"u2 {w}", f"u3 {w}"],
        "text": ["u1 a b", "u2 c d", "u3 e f"],
        "utt2spk": ["u1 A", "u2 B", "u3 A"],
    })
    with pytest.raises(DataDirError, match=r"utt2spk:3: utterances of speaker 'A' are not contiguous"):
        validate_data_dir(str(d))
    _write_files(d, {"utt2spk": ["u1 A", "u2 A", "u3 B"], "spk2utt": ["A u1", "B u3"]})
    with pytest.raises(DataDirError, match=r"spk2utt:1: utterances of 'A' differ from utt2spk"):
        validate_data_dir(str(d))
    _write_files(d, {"spk2utt": ["A u2 u1", "B u3"]})
    with pytest.raises(DataDirError, match=r"spk2utt:1: utterances of 'A' not sorted"):
        validate_data_dir(str(d))
    _write_files(d, {"spk2utt": ["A u1 u2", "B u3"]})
    validate_data_dir(str(d))


def test_bad_duration_and_missing_file(tmp_path):
    d = _good_dir(tmp_path)
    lines = (d / "utt2dur").read_text().splitlines()
    lines[0] = lines[0].split(" ")[0] + " -1"
    (d / "utt2dur").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataDirError, match=r"utt2dur:1: invalid duration '-1'"):
        validate_data_dir(str(d))
    os.unlink(d / "utt2spk")
    with pytest.raises(DataDirError, match=r"utt2spk: missing"):
        validate_data_dir(str(d))
    with pytest.raises(DataDirError, match="not a directory"):
        validate_data_dir(str(tmp_path / "nope"))
