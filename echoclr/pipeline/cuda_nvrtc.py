"""Compile the CUDA augmentation kernel to PTX with NVRTC, without a GPU (the CI check of the CUDA source).

cupy compiles with NVRTC too (:class:`~echoclr.pipeline.cuda_augment.CudaAugment`), but its compiler entry points
ask the CUDA runtime for the device first, which fails on a machine without a GPU driver. NVRTC itself needs no
device: this module calls the NVRTC library of the ``nvidia-cuda-nvrtc`` wheel (or the system's) through ctypes.
"""

from __future__ import annotations

import ctypes
import importlib.util
from collections.abc import Sequence
from pathlib import Path

KERNEL_FILE = "augment_cuda.cu"
HEADER_FILE = "augment_pixel.h"
NVRTC_OPTIONS: tuple[str, ...] = ("--std=c++17", "--fmad=false")
"""Options of every compile of the kernel: no fused multiply-adds, so sums round as the CPU kernel's."""


class NvrtcError(RuntimeError):
    """NVRTC is missing or rejected the source (the message holds NVRTC's log)."""


def kernel_source() -> str:
    """The CUDA kernel's source with its shared header (``csrc/augment_pixel.h``) inlined.

    Returns:
        CUDA C++ source text, self-contained (NVRTC needs no include path).

    Raises:
        FileNotFoundError: neither the installed copy (``echoclr/_kernels``) nor a source checkout's ``csrc/``
            holds the files.
    """
    package = Path(__file__).resolve().parent.parent
    for folder in (package / "_kernels", package.parent / "csrc"):
        if (folder / KERNEL_FILE).is_file() and (folder / HEADER_FILE).is_file():
            kernel = (folder / KERNEL_FILE).read_text()
            header = (folder / HEADER_FILE).read_text()
            include = f'#include "{HEADER_FILE}"'
            assert include in kernel, f"{KERNEL_FILE} must include {HEADER_FILE}"
            return kernel.replace(include, header, 1)
    raise FileNotFoundError(
        f"the CUDA kernel sources ({KERNEL_FILE}, {HEADER_FILE}) are neither in {package / '_kernels'} nor in "
        f"{package.parent / 'csrc'}; reinstall echoclr (`pip install -e .` from a source checkout)"
    )


def _library_candidates() -> list[str]:
    names = ["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"]
    spec = importlib.util.find_spec("nvidia")
    for root in (spec.submodule_search_locations or []) if spec else []:
        for sub in ("cu13/lib", "cuda_nvrtc/lib", "cu12/lib"):
            for name in ("libnvrtc.so.13", "libnvrtc.so.12"):
                path = Path(root) / sub / name
                if path.is_file():
                    names.insert(0, str(path))
    return names


def load_nvrtc() -> ctypes.CDLL:
    """The NVRTC library (the ``nvidia-cuda-nvrtc`` wheel's first, then the system's).

    Raises:
        NvrtcError: no NVRTC library can be loaded; the message says which wheel to install.
    """
    errors = []
    for name in _library_candidates():
        try:
            return ctypes.CDLL(name)
        except OSError as err:
            errors.append(str(err))
    raise NvrtcError(
        "NVRTC (libnvrtc) could not be loaded; install it with `pip install nvidia-cuda-nvrtc` (or "
        f"`pip install 'echoclr[test]'`). Tried: {'; '.join(errors[-3:])}"
    )


def compile_ptx(source: str, *, name: str = KERNEL_FILE, options: Sequence[str] = (), arch: str = "compute_90") -> str:
    """Compile CUDA C++ ``source`` to PTX with NVRTC (no GPU needed).

    Args:
        source: self-contained CUDA C++ source (see :func:`kernel_source`).
        name: the program's file name in NVRTC's messages.
        options: NVRTC options added to ``--gpu-architecture=<arch>`` and :data:`NVRTC_OPTIONS`.
        arch: virtual architecture, e.g. ``"compute_90"`` (H100/H200).

    Returns:
        The PTX text.

    Raises:
        NvrtcError: NVRTC is missing, or the compile failed (the message holds NVRTC's log: file, line, error).
    """
    lib = load_nvrtc()
    lib.nvrtcGetErrorString.restype = ctypes.c_char_p
    program = ctypes.c_void_p()

    def check(status: int, what: str) -> None:
        if status != 0:
            raise NvrtcError(f"{what} failed: {lib.nvrtcGetErrorString(status).decode()}")

    check(lib.nvrtcCreateProgram(ctypes.byref(program), source.encode(), name.encode(), 0, None, None),
          "nvrtcCreateProgram")
    try:
        args = [f"--gpu-architecture={arch}", *NVRTC_OPTIONS, *options]
        argv = (ctypes.c_char_p * len(args))(*(a.encode() for a in args))
        status = lib.nvrtcCompileProgram(program, len(args), argv)
        if status != 0:
            size = ctypes.c_size_t()
            check(lib.nvrtcGetProgramLogSize(program, ctypes.byref(size)), "nvrtcGetProgramLogSize")
            log = ctypes.create_string_buffer(size.value)
            check(lib.nvrtcGetProgramLog(program, log), "nvrtcGetProgramLog")
            raise NvrtcError(f"NVRTC could not compile {name} ({' '.join(args)}):\n{log.value.decode()}")
        size = ctypes.c_size_t()
        check(lib.nvrtcGetPTXSize(program, ctypes.byref(size)), "nvrtcGetPTXSize")
        ptx = ctypes.create_string_buffer(size.value)
        check(lib.nvrtcGetPTX(program, ptx), "nvrtcGetPTX")
        return ptx.value.decode()
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(program))
