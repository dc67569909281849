"""A decoder crash or hang on one file costs that file (skipped, named, reason given), never the run."""

from __future__ import annotations

import os
import shutil
import signal
import time

import pytest
import torch
from media_builders import media  # noqa: F401 - fixture
from torch.utils.data import DataLoader

from mjepa.data.loading.dataset import AudioVisualDataset, Sample, collate_samples
from mjepa.data.manifests import validate
from mjepa.data.manifests.manifest import ManifestEntry
from mjepa.data.media import decode
from mjepa.data.media.decode import ClipSpec
from mjepa.data.media.info import MediaError
from mjepa.data.media.isolation import IsolatedRunner
from mjepa.data.preprocess.fbank import AudioFrontendConfig
from mjepa.data.preprocess.video_transforms import VideoTransformConfig

_DECODE = decode._portable_decode
_VALIDATE = validate._validate_one


def _double(x):
    return 2 * x


def _segfault():
    os.kill(os.getpid(), signal.SIGSEGV)


def _sleep():
    time.sleep(60)


def _raise_unexpected():
    raise UnicodeDecodeError("utf-8", b"\xe9", 0, 1, "invalid continuation byte")


@pytest.mark.slow
def test_runner_turns_crashes_hangs_and_odd_exceptions_into_media_errors_and_recovers():
    runner = IsolatedRunner(timeout_s=2)
    assert runner("a.mp4", _double, 21) == 42
    with pytest.raises(MediaError, match="SIGSEGV") as crashed:
        runner("crash.mp4", _segfault)
    assert crashed.value.reason == "crashed" and crashed.value.path == "crash.mp4"
    with pytest.raises(MediaError) as hung:
        runner("hang.mp4", _sleep)
    assert hung.value.reason == "timeout"
    with pytest.raises(MediaError) as odd:
        runner("tags.avi", _raise_unexpected)
    assert odd.value.reason == "decoder_error" and "UnicodeDecodeError" in odd.value.detail
    assert runner("b.mp4", _double, 2) == 4  # a fresh helper took over
    runner.close()


def _decode_or_fail(entry, *args):
    """Crash on files named crash*, hang on files named hang*, decode the others."""
    name = os.path.basename(entry.path)
    if name.startswith("crash"):
        os.kill(os.getpid(), signal.SIGSEGV)
    if name.startswith("hang"):
        time.sleep(60)
    return _DECODE(entry, *args)


def _dataset(entries, timeout_s):
    return AudioVisualDataset(
        entries,
        [],
        ClipSpec(num_frames=4),
        AudioFrontendConfig(target_frames=192, num_mel_bins=64),
        VideoTransformConfig(output_size=32),
        training=True,
        decode_timeout_s=timeout_s,
    )


@pytest.mark.slow
def test_a_file_that_crashes_or_hangs_the_decoder_is_skipped_in_loader_workers(media, tmp_path, monkeypatch):
    monkeypatch.setattr(decode, "_portable_decode", _decode_or_fail)  # forked workers and helpers inherit it
    crash, hang = tmp_path / "crash.mp4", tmp_path / "hang.mp4"
    shutil.copy(media["mp4"], crash)
    shutil.copy(media["mp4"], hang)
    entries = [ManifestEntry(str(p)) for p in (media["mp4"], crash, media["mkv"], hang, media["webm"])]
    loader = DataLoader(_dataset(entries, timeout_s=3), batch_size=5, num_workers=2, collate_fn=collate_samples)
    started = time.time()
    (loaded,) = list(loader)
    assert time.time() - started < 60
    reasons = {os.path.basename(item.path): item.reason for item in loaded.skipped}
    assert reasons == {"crash.mp4": "crashed", "hang.mp4": "timeout"}
    assert loaded.batch.video.shape[0] == 3  # the good files were decoded


def test_isolated_decoding_gives_the_same_sample_as_direct_decoding(media):
    entries = [ManifestEntry(str(media["mp4"]))]
    direct, isolated = _dataset(entries, None)[(0, 7)], _dataset(entries, 30)[(0, 7)]
    assert isinstance(direct, Sample) and isinstance(isolated, Sample)
    assert torch.equal(direct.video, isolated.video) and torch.equal(direct.audio, isolated.audio)


def _validate_or_crash(entry, *args):
    if os.path.basename(entry.path).startswith("crash"):
        os.kill(os.getpid(), signal.SIGSEGV)
    return _VALIDATE(entry, *args)


def test_validate_reports_a_crashing_file_and_checks_the_rest(media, tmp_path, monkeypatch):
    monkeypatch.setattr(validate, "_validate_one", _validate_or_crash)
    monkeypatch.setattr(validate, "_RUNNER", None)
    crash = tmp_path / "crash.mp4"
    shutil.copy(media["mp4"], crash)
    report = validate.validate_manifest(
        [ManifestEntry(str(media["mp4"])), ManifestEntry(str(crash)), ManifestEntry(str(media["mkv"]))]
    )
    assert report.counts["ok"] == 2 and report.counts["crashed"] == 1
    assert report.issues[0].path == str(crash) and "SIGSEGV" in report.issues[0].detail


def _collect_garbage():
    import gc

    return gc.collect()


def _leave_threaded_decoder_as_garbage(path: str) -> None:
    """A PyAV decoder that has started its codec threads, unreachable in a reference cycle (the collector is off)."""
    import av

    container = av.open(path)
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"  # frame and slice threads, started by the first decoded frames
    for index, _ in enumerate(container.decode(stream)):
        if index == 3:
            break
    cycle = {"container": container, "stream": stream}
    cycle["self"] = cycle


class _CollectingDataset(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> int:
        return _collect_garbage()


def test_forked_processes_never_free_a_threaded_decoder_the_parent_left_as_garbage(media):
    # Garbage in the parent at fork time is copied into the child. A PyAV decoder in a reference cycle there owns
    # codec threads that the child does not have; collecting it in the child hangs or crashes it. Neither the
    # decoding helper nor a DataLoader worker started with leave_inherited_garbage collects it.
    import gc

    from mjepa.data.media.isolation import leave_inherited_garbage

    gc.disable()
    try:
        _leave_threaded_decoder_as_garbage(str(media["mkv"]))
        runner = IsolatedRunner(timeout_s=20)
        try:
            assert runner("clip.mkv", _collect_garbage) >= 0
            assert runner("clip.mkv", _double, 21) == 42  # and it still serves
        finally:
            runner.close()
        loader = DataLoader(_CollectingDataset(), num_workers=1, worker_init_fn=leave_inherited_garbage, timeout=20)
        assert len(list(loader)) == 2
    finally:
        gc.enable()
        gc.collect()
