"""``python -m llama_cpp.server`` for the tests, with the engine's AMX workaround applied first.

llama.cpp's AMX kernels (an extra CPU buffer type, picked on CPUs that report AMX) crash in
``llama_decode`` with this build (see ``suggest_ls.backends.llama.loading.cpu_has_amx``); ``llama_cpp.server``
loads its model through ``Llama``, which takes the default model parameters: this turns the extra
buffer types off in those defaults on such CPUs, then runs the server's own ``main`` with the
command line it was given.
"""

from __future__ import annotations

import runpy

import llama_cpp.llama_cpp as L

from suggest_ls.backends.llama.loading import cpu_has_amx


def _patch() -> None:
    L.llama_backend_init()
    if not cpu_has_amx(L.llama_print_system_info().decode(errors="replace")):
        return
    default = L.llama_model_default_params

    def without_extra_bufts() -> L.llama_model_params:
        params = default()
        params.use_extra_bufts = False
        return params

    L.llama_model_default_params = without_extra_bufts


if __name__ == "__main__":
    _patch()
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
