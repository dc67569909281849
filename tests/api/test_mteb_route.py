"""mteb's documented route, ``model_meta(...).load_model()`` then ``mteb.evaluate``, on a real local audio task."""

import numpy as np
import pytest

mteb = pytest.importorskip("mteb")

from datasets import Dataset, DatasetDict  # noqa: E402
from mteb.abstasks.classification import AbsTaskClassification  # noqa: E402
from mteb.abstasks.task_metadata import TaskMetadata  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from mjepa.mteb_encoder import model_meta  # noqa: E402

PITCHES = (300.0, 900.0, 2700.0)


def _tone(hz: float, seed: int, seconds: float = 1.0, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    noise = 0.01 * np.random.default_rng(seed).standard_normal(t.size)
    return (0.3 * np.sin(2 * np.pi * hz * t) + noise).astype(np.float32)


class LocalTones(AbsTaskClassification):
    """A local audio classification task: which of three pitches a clip holds."""

    metadata = TaskMetadata(
        name="MjepaLocalTones",
        description="Tones of three pitches, made in the test.",
        reference=None,
        dataset={"path": "local/tones", "revision": "1"},
        type="AudioClassification",
        category="a2c",
        eval_splits=["test"],
        eval_langs=["zxx-Zxxx"],
        main_score="accuracy",
        date=("2026-01-01", "2026-01-01"),
        domains=["Music"],
        task_subtypes=[],
        license="cc0-1.0",
        annotations_creators="derived",
        dialect=[],
        modalities=["audio"],
        sample_creation="created",
        bibtex_citation="",
    )
    input_column_name = "audio"
    label_column_name = "label"
    is_cross_validation = False

    def load_data(self, **kwargs) -> None:
        def split(count: int, first_seed: int) -> Dataset:
            labels = [i % 3 for i in range(count)]
            audio = [{"array": _tone(PITCHES[y], first_seed + i), "sampling_rate": 16000} for i, y in enumerate(labels)]
            return Dataset.from_dict({"audio": audio, "label": labels})

        self.dataset = {"default": DatasetDict({"train": split(24, 0), "test": split(12, 100)})}
        self.data_loaded = True


def test_the_documented_route_runs_a_local_audio_task_end_to_end():
    meta = model_meta("mjepa-tiny", name="mjepa/mjepa-tiny")
    model = meta.load_model()  # asks for no torchaudio or torchcodec: mjepa decodes with FFmpeg
    assert model.mteb_model_meta.modalities == ["audio", "video"]
    results = mteb.evaluate(model, [LocalTones()], cache=None)
    assert not results.exceptions
    (result,) = results.task_results
    assert result.task_name == "MjepaLocalTones" and result.get_score() > 0.9  # three pitches are easy to tell apart


def test_an_encoder_built_directly_carries_its_meta_and_names_a_bad_row():
    encoder = model_meta("mjepa-tiny").loader("mjepa/mjepa-tiny", revision=None)
    assert encoder.mteb_model_meta.embed_dim == encoder.model.embedding_dim
    rows = [{"audio": {"array": _tone(300.0, i), "sampling_rate": 16000}} for i in range(4)]
    rows[3]["audio"]["array"] = np.full(16000, np.nan, np.float32)
    with pytest.raises(ValueError, match="row 3 of the inputs: 16000 of 16000 audio samples are NaN"):
        encoder.encode(DataLoader(rows, batch_size=2), task_metadata=None, hf_split="test", hf_subset="default")
