#!/usr/bin/env python3
"""Compile CUDA C sources with NVRTC, as the backend does at start, on a machine without a GPU.

NVRTC needs no driver: `pip download --no-deps nvidia-cuda-nvrtc` and unzip the wheel, then
    NVRTC_LIB=path/to/libnvrtc.so.13 python3 tools/cuda/nvrtc_check.py cuda/src/*.cu
compiles each file after cuda/src/common.cuh (as src/kernels.rs does) and prints NVRTC's log for each file and exits non-zero when one does not compile. Options are the
backend's: `--gpu-architecture=compute_90` (H100/H200) unless ARCH says otherwise; ARCH=sm_90 also
assembles to SASS (checks inline PTX, prints registers and spills).
"""
import ctypes
import os
import sys


def main() -> int:
    lib = ctypes.CDLL(os.environ.get("NVRTC_LIB", "libnvrtc.so.13"))
    arch = os.environ.get("ARCH", "compute_90")
    failed = 0
    here = os.path.dirname(os.path.abspath(__file__))
    prelude = open(os.path.join(here, "../../cuda/src/common.cuh"), "rb").read()
    for path in sys.argv[1:]:
        src = prelude + b"\n" + open(path, "rb").read()
        prog = ctypes.c_void_p()
        rc = lib.nvrtcCreateProgram(ctypes.byref(prog), src, path.encode(), 0, None, None)
        assert rc == 0, f"nvrtcCreateProgram: {rc}"
        opts = [f"--gpu-architecture={arch}".encode()]
        if arch.startswith("sm_"):
            # A real architecture: NVRTC also assembles (ptxas), which checks inline PTX and
            # reports registers and spills per kernel.
            opts.append(b"--ptxas-options=-v")
        arr = (ctypes.c_char_p * len(opts))(*opts)
        rc = lib.nvrtcCompileProgram(prog, len(opts), arr)
        size = ctypes.c_size_t()
        lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        log = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetProgramLog(prog, log)
        text = log.value.decode(errors="replace").strip()
        print(f"{path}: {'ok' if rc == 0 else f'FAILED ({rc})'}")
        if text:
            print(text)
        if rc == 0:
            psize = ctypes.c_size_t()
            lib.nvrtcGetPTXSize(prog, ctypes.byref(psize))
            ptx = ctypes.create_string_buffer(psize.value)
            lib.nvrtcGetPTX(prog, ptx)
            out = os.environ.get("PTX_OUT")
            if out:
                base = os.path.basename(path).rsplit(".", 1)[0]
                with open(os.path.join(out, base + ".ptx"), "wb") as f:
                    f.write(ptx.value)
        else:
            failed += 1
        lib.nvrtcDestroyProgram(ctypes.byref(prog))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
