"""verify a model another tool wrote against its source: TensorFlow's converter's SimpleRNN models (its WHILE loop
and its unrolled steps), which hold no network tflrnn reads, compared with the Keras model they came from."""

from __future__ import annotations

import numpy as np
import pytest

from tflrnn.verification import verify

from support import assert_clean_error

pytestmark = pytest.mark.tensorflow


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """A Keras SimpleRNN classifier-per-step (and another with other weights), and the converter's two forms of the
    first: the WHILE loop and the unrolled steps."""
    keras = pytest.importorskip("keras")
    import tensorflow as tf

    folder = tmp_path_factory.mktemp("converted")

    def model(seed, unroll=False):
        keras.utils.set_random_seed(seed)
        return keras.Sequential([keras.Input((10, 3), batch_size=1),
                                 keras.layers.SimpleRNN(8, return_sequences=True, unroll=unroll),
                                 keras.layers.Dense(2)])

    source = model(0)
    source.save(folder / "source.keras")
    model(1).save(folder / "other.keras")
    for unroll in (False, True):
        twin = model(0, unroll)
        twin.set_weights(source.get_weights())
        name = "unrolled" if unroll else "while"
        (folder / f"{name}.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(twin).convert())
    return folder


@pytest.mark.parametrize("form", ["while", "unrolled"])
def test_a_converters_model_is_compared_with_its_keras_source(converted, form):
    report = verify(converted / f"{form}.tflite", against=converted / "source.keras", runtime="litert")
    assert report.passed, [c.detail for c in report.failures]
    checks = [c for c in report.checks if c.name == "against.keras"]
    assert {c.runtime for c in checks} == {"litert", "litert+xnnpack"}
    assert all(0 < c.max_abs_error < 1e-5 for c in checks)  # float32 against Keras: rounding, not zero
    assert report.against["format"] == "keras"
    assert any("no structural check" in note for note in report.notes)


def test_another_source_fails(converted):
    report = verify(converted / "unrolled.tflite", against=converted / "other.keras", runtime="litert")
    assert not report.passed and all(c.name == "against.keras" for c in report.failures)
    assert min(c.max_abs_error for c in report.failures) > 0.1


def test_what_a_foreign_model_cannot_be_given(cli, converted, tmp_path):
    assert_clean_error(cli("verify", converted / "while.tflite"), "holds no network tflrnn writes",
                       "--against SOURCE")
    np.save(tmp_path / "d.npy", np.zeros((2, 1, 10, 3), np.float32))
    assert_clean_error(cli("verify", converted / "while.tflite", "--against", converted / "source.keras", "--data",
                           tmp_path / "d.npy"), "--data")
    (tmp_path / "w.npz").write_bytes(b"")
    assert_clean_error(cli("verify", converted / "while.tflite", "--against", tmp_path / "w.npz"), "Keras model")
