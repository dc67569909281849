import json
from pathlib import Path

import pytest

from mjepa.data.manifests.importers import (
    esc50_fold_split,
    import_ast_json,
    import_audioset_csv,
    import_esc50,
    import_fsd50k_dev,
    import_fsd50k_eval,
    import_kinetics,
    import_ssv2,
    import_vggsound,
    read_audioset_class_labels,
)
from mjepa.data.manifests.manifest import ManifestError

CLASS_LABELS = 'index,mid,display_name\n0,/m/09x0r,"Speech"\n1,/m/0bt9lr,"Dog"\n2,/m/04rlf,"Music, general"\n'


def touch(root: Path, *names: str) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def class_labels(tmp_path) -> Path:
    return write(tmp_path / "class_labels_indices.csv", CLASS_LABELS)


def test_audioset_labels_are_ordered_by_index(class_labels):
    assert read_audioset_class_labels(class_labels) == [
        ("/m/09x0r", "Speech"),
        ("/m/0bt9lr", "Dog"),
        ("/m/04rlf", "Music, general"),
    ]


def test_audioset_segments_csv(tmp_path, class_labels):
    segments = write(
        tmp_path / "balanced_train_segments.csv",
        "# Segments csv created Sun Mar  5 10:54:31 2017\n"
        "# num_ytids=3, num_segs=3, num_unique_labels=3, num_positive_labels=4\n"
        "# YTID, start_seconds, end_seconds, positive_labels\n"
        '--PJHxphWEs, 30.000, 40.000, "/m/09x0r,/m/04rlf"\n'
        '--ZhevVpy1s, 50.000, 60.000, "/m/0bt9lr"\n'
        'gone000000a, 0.000, 10.000, "/m/09x0r"\n',
    )
    media = tmp_path / "media"
    touch(media, "--PJHxphWEs_30.mp4", "--ZhevVpy1s_50.mkv")
    patterns = ("{ytid}_{start:.0f}.mp4", "{ytid}_{start:.0f}.mkv")
    result = import_audioset_csv(segments, class_labels, media, path_patterns=patterns)
    assert [Path(e.path).name for e in result.entries] == ["--PJHxphWEs_30.mp4", "--ZhevVpy1s_50.mkv"]
    assert result.entries[0].labels == ("Speech", "Music, general")
    assert result.entries[0].start is None and result.entries[0].end is None
    assert result.missing == ("gone000000a",)
    assert result.summary() == "2 of 3 items found; 1 missing (33.3 %)"
    full = import_audioset_csv(segments, class_labels, media, ("{ytid}_{start:.0f}.mp4",), segment_bounds_in_file=True)
    assert (full.entries[0].start, full.entries[0].end) == (30.0, 40.0)


@pytest.mark.parametrize(
    "row,message",
    [
        ('abc, 30.000, 40.000, "/m/nope"', r"segments.csv:2: column 'positive_labels' has MID '/m/nope'"),
        ('abc, thirty, 40.000, "/m/09x0r"', r"segments.csv:2: column 'start_seconds' must be a number"),
        ("abc, 30.000, 40.000", r"segments.csv:2: expected 4 fields"),
        ('abc, 40.000, 30.000, "/m/09x0r"', r"segments.csv:2: column 'end_seconds'"),
    ],
)
def test_audioset_malformed_rows_name_file_line_column(tmp_path, class_labels, row, message):
    segments = write(tmp_path / "segments.csv", "# YTID, start_seconds, end_seconds, positive_labels\n" + row + "\n")
    with pytest.raises(ManifestError, match=message):
        import_audioset_csv(segments, class_labels, tmp_path)


def test_unknown_pattern_field_is_named(tmp_path, class_labels):
    segments = write(tmp_path / "s.csv", 'abc, 0, 10, "/m/09x0r"\n')
    with pytest.raises(ValueError, match="unknown field 'video'"):
        import_audioset_csv(segments, class_labels, tmp_path, path_patterns="{video}.mp4")


def test_ast_json(tmp_path, class_labels):
    touch(tmp_path, "audio/a.wav")
    document = {
        "data": [
            {"wav": "audio/a.wav", "labels": "/m/09x0r,/m/0bt9lr"},
            {"wav": "/nowhere/b.wav", "labels": "/m/04rlf"},
        ]
    }
    result = import_ast_json(write(tmp_path / "train.json", json.dumps(document)), class_labels)
    assert len(result.entries) == 1 and result.entries[0].labels == ("Speech", "Dog")
    assert result.entries[0].path == str(tmp_path / "audio/a.wav")
    assert result.missing == ("/nowhere/b.wav",)
    bad = write(tmp_path / "bad.json", json.dumps({"data": [{"labels": "/m/09x0r"}]}))
    with pytest.raises(ManifestError, match=r"bad.json: data\[0\]: key 'wav'"):
        import_ast_json(bad, class_labels)


ESC50_HEADER = "filename,fold,target,category,esc10,src_file,take\n"


def esc50_meta(tmp_path: Path) -> Path:
    rows = []
    for fold in range(1, 6):
        for take in "AB":  # two clips cut from one recording always share a fold
            rows.append(f"{fold}-10{fold}-{take}-0.wav,{fold},{fold - 1},class{fold},False,10{fold},{take}")
    touch(tmp_path / "audio", *[row.split(",")[0] for row in rows if not row.startswith("5-105-B")])
    return write(tmp_path / "esc50.csv", ESC50_HEADER + "\n".join(rows) + "\n")


def test_esc50_folds_do_not_overlap(tmp_path):
    meta = esc50_meta(tmp_path)
    for test_fold in range(1, 6):
        train, test = esc50_fold_split(meta, tmp_path / "audio", test_fold)
        train_names = {Path(e.path).name for e in train.entries} | set(train.missing)
        test_names = {Path(e.path).name for e in test.entries} | set(test.missing)
        assert not train_names & test_names and len(train_names | test_names) == 10
        assert all(name.startswith(f"{test_fold}-") for name in test_names)
        # Same source recording never on both sides.
        assert not {n.split("-")[1] for n in train_names} & {n.split("-")[1] for n in test_names}
    _, test = esc50_fold_split(meta, tmp_path / "audio", 5)
    assert test.missing == ("5-105-B-0.wav",) and test.entries[0].labels == ("class5",)
    assert len(import_esc50(meta, tmp_path / "audio").entries) == 9
    with pytest.raises(ValueError, match="1-5"):
        esc50_fold_split(meta, tmp_path / "audio", 6)


def test_esc50_bad_fold_value(tmp_path):
    meta = write(tmp_path / "esc50.csv", ESC50_HEADER + "1-1-A-0.wav,7,0,dog,True,1,A\n")
    with pytest.raises(ManifestError, match=r"esc50.csv:2: column 'fold' must be 1-5"):
        import_esc50(meta, tmp_path)
    meta = write(tmp_path / "esc50.csv", "filename,fold,target\n")
    with pytest.raises(ManifestError, match=r"esc50.csv:1: header lacks column 'category'"):
        import_esc50(meta, tmp_path)


def test_fsd50k_dev_and_eval(tmp_path):
    dev = write(
        tmp_path / "dev.csv",
        "fname,labels,mids,split\n"
        '64760,"Electric_guitar,Guitar","/m/02sgy,/m/0342h",train\n'
        '16399,"Drill,Tools","/m/01d380,/m/07k1x",val\n'
        '99999,"Bark","/m/05tny_",train\n',
    )
    touch(tmp_path / "dev_audio", "64760.wav", "16399.wav")
    everything = import_fsd50k_dev(dev, tmp_path / "dev_audio")
    assert [e.labels for e in everything.entries] == [("Electric_guitar", "Guitar"), ("Drill", "Tools")]
    assert everything.missing == ("99999",)
    validation = import_fsd50k_dev(dev, tmp_path / "dev_audio", split="val")
    assert [Path(e.path).name for e in validation.entries] == ["16399.wav"]
    evaluation = write(tmp_path / "eval.csv", 'fname,labels,mids\n37199,"Music","/m/04rlf"\n')
    touch(tmp_path / "eval_audio", "37199.wav")
    assert import_fsd50k_eval(evaluation, tmp_path / "eval_audio").entries[0].labels == ("Music",)
    bad = write(tmp_path / "bad.csv", 'fname,labels,mids,split\n1,"Bark","/m/05tny_",test\n')
    with pytest.raises(ManifestError, match=r"bad.csv:2: column 'split' must be 'train' or 'val'"):
        import_fsd50k_dev(bad, tmp_path)


def test_vggsound(tmp_path):
    csv_path = write(
        tmp_path / "vggsound.csv",
        "---g-f_I2yQ,1,people marching,test\n"
        '--0PQM4-hqg,30,"engine accelerating, revving, vroom",train\n'
        "missing_one,0,dog barking,train\n",
    )
    touch(tmp_path / "video", "---g-f_I2yQ_000001.mp4", "--0PQM4-hqg_000030.mp4")
    result = import_vggsound(csv_path, tmp_path / "video")
    assert [e.labels for e in result.entries] == [("people marching",), ("engine accelerating, revving, vroom",)]
    assert result.missing == ("missing_one_0",)
    assert len(import_vggsound(csv_path, tmp_path / "video", split="test").entries) == 1
    bad = write(tmp_path / "bad.csv", "abc,1,dog,dev\n")
    with pytest.raises(ManifestError, match=r"bad.csv:1: column 'split'"):
        import_vggsound(bad, tmp_path)


def test_kinetics(tmp_path):
    csv_path = write(
        tmp_path / "train.csv",
        "label,youtube_id,time_start,time_end,split\n"
        "abseiling,0347ZoDXyP0,102,112,train\n"
        '"tying knot (not on a tie)",0a1b2c3d4e5,5,15,train\n',
    )
    touch(tmp_path / "k400", "abseiling/0347ZoDXyP0_000102_000112.mp4")
    result = import_kinetics(csv_path, tmp_path / "k400")
    assert result.entries[0].labels == ("abseiling",) and result.entries[0].has_audio is None
    assert result.missing == ("0a1b2c3d4e5",)
    test_csv = write(tmp_path / "test.csv", "youtube_id,time_start,time_end,split\n0347ZoDXyP0,102,112,test\n")
    flat = import_kinetics(test_csv, tmp_path / "k400", path_patterns="abseiling/{ytid}_{start:06.0f}_{end:06.0f}.mp4")
    assert flat.entries[0].labels == ()
    bad = write(tmp_path / "bad.csv", "label,youtube_id,time_start,time_end,split\nx,abc,10,zz,train\n")
    with pytest.raises(ManifestError, match=r"bad.csv:2: column 'time_end' must be a number"):
        import_kinetics(bad, tmp_path)


def test_ssv2(tmp_path):
    classes = {"Approaching something with your camera": "0", "Holding something": "1"}
    labels = write(tmp_path / "labels.json", json.dumps(classes))
    annotations = write(
        tmp_path / "train.json",
        json.dumps(
            [
                {
                    "id": "78687",
                    "label": "holding potato",
                    "template": "Holding [something]",
                    "placeholders": ["potato"],
                },
                {
                    "id": "42326",
                    "label": "approaching cup with your camera",
                    "template": "Approaching [something] with your camera",
                    "placeholders": ["cup"],
                },
            ]
        ),
    )
    touch(tmp_path / "videos", "78687.webm")
    result = import_ssv2(annotations, labels, tmp_path / "videos")
    assert result.entries[0].labels == ("Holding something",) and result.entries[0].has_audio is False
    assert result.missing == ("42326",)
    bad = write(tmp_path / "bad.json", json.dumps([{"id": "1", "template": "Juggling [something]"}]))
    message = r"bad.json: item \[0\]: key 'template' 'Juggling \[something\]' has no class"
    with pytest.raises(ManifestError, match=message):
        import_ssv2(bad, labels, tmp_path)


def test_missing_metadata_file_is_named(tmp_path):
    with pytest.raises(ManifestError, match="nope.csv: metadata file does not exist"):
        import_vggsound(tmp_path / "nope.csv", tmp_path)


def test_manifest_meta_fields_round_trip_and_are_checked(tmp_path):
    from mjepa.data.manifests.manifest import EntryTable, ManifestEntry, read_manifest, write_manifest

    entry = ManifestEntry("a.ogg", labels=("hello",), meta=(("package", "hedgewars-data"), ("take", 2)))
    write_manifest(tmp_path / "m.jsonl", [entry, ManifestEntry("b.ogg")], paths_from=tmp_path)
    text = (tmp_path / "m.jsonl").read_text().splitlines()
    assert '"meta": {"package": "hedgewars-data", "take": 2}' in text[0] and "meta" not in text[1]
    back = read_manifest(tmp_path / "m.jsonl", resolve_paths=False)
    assert back[0].meta == entry.meta and back[0].meta_value("package") == "hedgewars-data" and back[1].meta == ()
    assert EntryTable(back)[0] == back[0]
    (tmp_path / "bad.jsonl").write_text('{"path": "a.ogg", "meta": {"nested": {"x": 1}}}\n')
    with pytest.raises(ManifestError, match="bad.jsonl:1: key 'meta' must be an object of strings and numbers"):
        read_manifest(tmp_path / "bad.jsonl")
