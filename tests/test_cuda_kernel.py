"""The CUDA augmentation kernel: NVRTC compiles its source on any machine (CI), and on a GPU it equals the CPU
kernel (tests marked ``cuda``)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from echoclr.pipeline.cuda_nvrtc import HEADER_FILE, NVRTC_OPTIONS, NvrtcError, compile_ptx, kernel_source

CSRC = Path(__file__).resolve().parent.parent / "csrc"


def test_nvrtc_compiles_the_cuda_kernel_without_a_gpu():
    ptx = compile_ptx(kernel_source(), arch="compute_90")
    assert re.search(r"\.visible \.entry augment_clips\(", ptx)
    # --fmad=false reached NVRTC: the float sums are not contracted (sin/cos keep their own f64 FMAs)
    assert "fma.rn.f32" not in ptx
    assert "--fmad=false" in NVRTC_OPTIONS
    # the check fails when it should: a type error in the shared header is reported with its line
    broken = kernel_source().replace("b.w[0] = static_cast<float>", "b.w[0] = static_cast<float*>", 1)
    with pytest.raises(NvrtcError, match=r"error"):
        compile_ptx(broken)


def test_the_cpu_and_cuda_kernels_include_the_same_pixel_header():
    for name in ("augment.cpp", "augment_cuda.cu"):
        assert f'#include "{HEADER_FILE}"' in (CSRC / name).read_text(), name
    kernel = (CSRC / "augment_cuda.cu").read_text()
    from echoclr.pipeline.cuda_augment import THREADS_PER_CLIP

    assert f"constexpr int kThreads = {THREADS_PER_CLIP};" in kernel


def test_import_without_cupy_fails_soft_and_use_fails_loud():
    code = (
        "import sys; sys.modules['cupy'] = None\n"
        "import echoclr, echoclr.pipeline, echoclr.pipeline.cuda_augment as ca, echoclr.pipeline.device_cache as dc\n"
        "import echoclr.pipeline.cuda_loader, echoclr.train, echoclr.data\n"
        "assert not ca.cupy_available()\n"
        "try:\n"
        "    ca.CudaAugment(channels=1, mean=None, std=None, min_range=1e-6)\n"
        "except ca.CupyNotAvailableError as err:\n"
        "    print(err)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "pip install 'echoclr[gpu]'" in out.stdout and "--device-cache off" in out.stdout


@pytest.mark.cuda
@pytest.mark.parametrize("channels, kinetics", [(1, False), (3, True)])
def test_cuda_kernel_equals_the_cpu_kernel_within_one_gray_level(channels, kinetics):
    import cupy as cp

    from echoclr.data.sampling import AugmentDraws
    from echoclr.pipeline.cpu_ops import FusedAugment
    from echoclr.pipeline.cuda_augment import CudaAugment
    from echoclr.pipeline.graph import KINETICS_MEAN, KINETICS_STD, MIN_RANGE
    from echoclr.pipeline.reference import draw_params

    rng = np.random.default_rng(channels)
    n, t, h, w = 64, 4, 112, 112
    clips = rng.integers(0, 256, (n, t, h, w), dtype=np.uint8)
    clips[0] = 0  # a constant clip: no NaN
    orders = np.stack([rng.permutation(t) for _ in range(n)]).astype(np.int32)  # (n, t)
    params = draw_params(rng, n, AugmentDraws(rotate_p=0.5))
    mean, std = (KINETICS_MEAN, KINETICS_STD) if kinetics else (None, None)
    cpu = np.stack(FusedAugment(channels=channels, mean=mean, std=std, min_range=MIN_RANGE, threads=2)(
        list(clips), list(orders), list(params.shift.astype(np.int32)), list(params.flip.astype(np.int32)),
        list(params.angle)))  # (n, t, h, w, c)
    gpu = CudaAugment(channels=channels, mean=mean, std=std, min_range=MIN_RANGE)(
        cp.asarray(clips), orders, params.shift, params.flip, params.angle).get()
    assert gpu.shape == cpu.shape and np.isfinite(gpu).all()
    rotated = params.angle != 0
    # unrotated clips: the same float32 operations on the same bytes
    np.testing.assert_array_equal(gpu[~rotated], cpu[~rotated])
    # rotated clips: one gray level where a sample rounds the other way, through min-max (and the std)
    scale = 1.0 / min(KINETICS_STD) if kinetics else 1.0
    for i in np.flatnonzero(rotated):
        assert np.abs(gpu[i] - cpu[i]).max() <= 4.0 / (255 - 2) * scale * 1.01, i
    assert np.mean(np.abs(gpu - cpu) > 1e-6) < 0.005
