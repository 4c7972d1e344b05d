"""Precision: which devices train under bf16 autocast, for which models, and that bf16 learns."""

import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lstm_pipeline import runtime
from lstm_pipeline.config import ModelConfig, TrainConfig
from lstm_pipeline.errors import InputError
from lstm_pipeline.runtime import (
    BF16_MIN_HIDDEN,
    CPU_BF16_MIN_HIDDEN,
    choose_autocast,
    cpu_has_native_bf16,
    make_runtime,
    sharing_cores,
)
from tests.unit import test_train
from tests.unit.test_train import tiny_fit, tiny_quantile_fit

# the seeded sine-plus-noise tickers test_train trains on
sine_prices, sine_windows = test_train.sine_prices, test_train.sine_windows

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/cpuinfo")


def kernel_flags() -> set[str]:
    return set(Path("/proc/cpuinfo").read_text().split())


@linux
def test_the_native_bf16_query_agrees_with_the_kernels_cpu_flags(monkeypatch):
    expected = bool({"amx_bf16", "avx512_bf16"} & kernel_flags())
    assert cpu_has_native_bf16() is expected
    monkeypatch.delattr(torch.cpu, "get_capabilities")  # an older torch: the flags themselves
    assert cpu_has_native_bf16() is expected


def expected_autocast(precision, device, native, hidden):
    """The rule, spelled out: fp32 unless asked for bf16 or auto finds it native and faster."""
    if precision == "fp32" or not native:
        return None
    threshold = BF16_MIN_HIDDEN if device == "cuda" else CPU_BF16_MIN_HIDDEN
    return torch.bfloat16 if precision == "bf16" or hidden >= threshold else None


@settings(max_examples=80, deadline=None)
@given(
    precision=st.sampled_from(["auto", "fp32", "bf16"]),
    device=st.sampled_from(["cpu", "cuda", "mps"]),
    native=st.booleans(),
    hidden=st.one_of(
        st.integers(1, 1024),
        st.sampled_from([CPU_BF16_MIN_HIDDEN - 1, CPU_BF16_MIN_HIDDEN, BF16_MIN_HIDDEN - 1]),
    ),
)
def test_autocast_follows_capability_hidden_size_and_the_precision_option(
    precision, device, native, hidden
):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runtime, "cpu_has_native_bf16", lambda: native)
        patch.setattr(torch.cuda, "is_bf16_supported", lambda: native)
        native_here = native and device != "mps"  # no bf16 rule for Apple GPUs
        if precision == "bf16" and not native_here:
            with pytest.raises(InputError, match=f"precision bf16 needs .* not this {device};"):
                choose_autocast(precision, torch.device(device), hidden)
            return
        got = choose_autocast(precision, torch.device(device), hidden)
    assert got == expected_autocast(precision, device, native_here, hidden)


def test_this_cpu_trains_the_default_model_in_bf16_exactly_when_it_has_native_bf16():
    """The real capability query: bf16 on a Xeon with AMX or AVX-512 BF16, fp32 elsewhere."""
    default = make_runtime(TrainConfig(device="cpu"), ModelConfig().hidden_size)
    assert default.autocast_dtype == (torch.bfloat16 if cpu_has_native_bf16() else None)
    tiny = make_runtime(TrainConfig(device="cpu"), CPU_BF16_MIN_HIDDEN - 1)
    assert tiny.autocast_dtype is None
    if cpu_has_native_bf16():
        asked = make_runtime(TrainConfig(device="cpu", precision="bf16"), 8)
        assert asked.autocast_dtype == torch.bfloat16
    else:
        with pytest.raises(InputError, match="precision bf16 needs"):
            make_runtime(TrainConfig(device="cpu", precision="bf16"), 8)


def test_bf16_without_native_support_on_this_cpu_is_an_input_error(monkeypatch, sine_windows):
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: False)
    with pytest.raises(InputError, match=r"AMX or AVX-512 BF16\), not this cpu; use precision"):
        tiny_fit(sine_windows, precision="bf16")
    assert make_runtime(TrainConfig(device="cpu"), BF16_MIN_HIDDEN).autocast_dtype is None


@pytest.mark.parametrize("fitter", [tiny_fit, tiny_quantile_fit], ids=["point", "quantile"])
def test_bf16_autocast_training_on_cpu_learns_and_keeps_fp32_weights(
    monkeypatch,
    sine_windows,
    fitter,
):
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: True)  # emulated where absent
    result = fitter(sine_windows, precision="bf16", max_epochs=4)
    assert result.precision == "bf16"
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < losses[0] * 0.9
    assert {p.dtype for p in result.model.parameters()} == {torch.float32}


def test_sharing_cores_leaves_a_core_per_worker_and_restores_the_threads() -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        with sharing_cores(workers=1):
            assert torch.get_num_threads() == 2
        with pytest.raises(RuntimeError), sharing_cores(workers=5):
            assert torch.get_num_threads() == 1  # never below one
            raise RuntimeError("the block fails")
        assert torch.get_num_threads() == 3  # back, after an error too
    finally:
        torch.set_num_threads(before)


@settings(max_examples=200, deadline=None)
@given(
    threads=st.one_of(st.none(), st.integers(1, 64)),
    device=st.sampled_from(["cpu", "cuda", "mps"]),
    batch_size=st.integers(1, 4096),
    hidden_size=st.integers(1, 1024),
)
def test_a_fit_takes_the_threads_asked_for_else_one_when_too_small_to_share(
    threads, device, batch_size, hidden_size
):
    got = runtime.choose_threads(threads, torch.device(device), batch_size, hidden_size)
    if threads is not None:
        assert got == threads
    elif device == "cpu" and batch_size * hidden_size < runtime.ONE_THREAD_BELOW:
        assert got == 1
    else:
        assert got == runtime.DEFAULT_THREADS


def test_the_smoke_model_fits_on_one_thread_and_a_later_default_fit_gets_them_all_back(
    monkeypatch,
):
    monkeypatch.setattr(runtime, "DEFAULT_THREADS", 3)
    before = torch.get_num_threads()
    try:
        make_runtime(TrainConfig(device="cpu", batch_size=64), hidden_size=8)
        assert torch.get_num_threads() == 1
        make_runtime(TrainConfig(device="cpu", batch_size=256), hidden_size=64)
        assert torch.get_num_threads() == 3  # the same process, the default model's fit
        make_runtime(TrainConfig(device="cpu", batch_size=64, threads=2), hidden_size=8)
        assert torch.get_num_threads() == 2  # asked for
    finally:
        torch.set_num_threads(before)
