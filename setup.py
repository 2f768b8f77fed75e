"""Build the optional compiled CPU convolution kernels (plain C, no torch headers).

The extension is optional: when no C compiler is available the install still succeeds and
blurkit falls back to its pure-PyTorch engine (see ``blurkit.filtering.backend_info``).
"""

from glob import glob

from setuptools import Extension, setup

ext = Extension(
    "blurkit._cconv",
    sources=sorted(glob("src/blurkit/csrc/*.c")),
    depends=["src/blurkit/csrc/bk_common.h"],
    extra_compile_args=["-O3", "-std=c11", "-fno-strict-aliasing", "-ffp-contract=fast"],
    extra_link_args=["-lpthread"],
    optional=True,
)

setup(ext_modules=[ext])
