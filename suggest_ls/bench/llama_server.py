"""llama.cpp's own ``llama-server`` for the benchmarks and tests: find the build, start it, ask it.

``scripts/build-llama-server.sh`` builds it into the cache outside git. Started on loopback the
way llama.vim recommends (``--cache-reuse 256``, batches of 1024), with the in-process engine's
slots and context; ``post_json`` asks it the way llama.vim's ``curl`` does (a fresh connection).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import urllib.request
from pathlib import Path
from typing import Any

CACHE_REUSE = 256


def find_llama_server() -> Path | None:
    """``$SUGGEST_LS_LLAMA_SERVER``, else the newest build of ``scripts/build-llama-server.sh`` in the cache."""
    given = os.environ.get("SUGGEST_LS_LLAMA_SERVER")
    if given:
        return Path(given)
    cache = Path(os.environ.get("SUGGEST_LS_CACHE", Path.home() / ".cache" / "suggest-ls")) / "llama-server"
    found = sorted(cache.glob("*/bin/llama-server"))
    return found[-1] if found else None


def _cpu_has_amx() -> bool:
    import llama_cpp

    from suggest_ls.backends.llama.loading import cpu_has_amx

    return cpu_has_amx(llama_cpp.llama_print_system_info().decode(errors="replace"))


def server_command(
    binary: Path, model: str, port: int, slots: int = 4, context_per_slot: int = 4096, threads: int = 0
) -> list[str]:
    """``llama-server`` on loopback as llama.vim recommends it (``--cache-reuse 256``, batches of 1024),
    ``slots`` slots of ``context_per_slot`` tokens each (the in-process engine's defaults)."""
    command = [str(binary), "-m", model, "--host", "127.0.0.1", "--port", str(port)]
    command += ["-c", str(slots * context_per_slot), "-np", str(slots), "--cache-reuse", str(CACHE_REUSE)]
    command += ["-b", "1024", "-ub", "1024"]
    if threads:
        command += ["-t", str(threads), "-tb", str(threads)]
    if _cpu_has_amx():
        command.append("--no-repack")  # its AMX kernels crash here, as in-process (cpu_has_amx)
    return command


async def start_llama_server(
    model: str, log: Path, port: int, slots: int = 4, context_per_slot: int = 4096, threads: int = 0
) -> tuple[asyncio.subprocess.Process, str]:
    """Start ``llama-server`` and wait until its model is loaded; the process and its base URL."""
    binary = find_llama_server()
    if binary is None or not binary.exists():
        raise RuntimeError("llama-server is not built: run scripts/build-llama-server.sh")
    out = log.open("wb")
    proc = await asyncio.create_subprocess_exec(
        *server_command(binary, model, port, slots, context_per_slot, threads), stdout=out, stderr=out
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(1500):
        if proc.returncode is not None:
            raise RuntimeError(f"llama-server exited; see {log}")
        with contextlib.suppress(OSError):
            urllib.request.urlopen(url + "/health", timeout=1).read()  # 503 (an OSError) while loading
            return proc, url
        await asyncio.sleep(0.2)
    await stop_process(proc)
    raise RuntimeError(f"llama-server did not start; see {log}")


async def stop_process(proc: asyncio.subprocess.Process) -> None:
    """Terminate a server process (killed after 10 s)."""
    if proc.returncode is None:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


def remote_settings(model: str, url: str) -> dict[str, Any]:
    """The settings that make suggest-ls use this server as its remote backend: the endpoint, and the
    model's fill-in-the-middle template (a remote's vocabulary is not read)."""
    from suggest_ls.bench.baseline import InProcess
    from suggest_ls.completion.prompt import detect_template

    template = detect_template(InProcess(model, 512, 0, vocab_only=True).info())
    return {"backend": "openai", "endpoint": url + "/v1", **({"template": template.name} if template.fim else {})}


async def post_json(url: str, path: str, body: dict[str, Any], timeout: float = 120.0) -> dict[str, Any]:
    """``POST`` JSON over a fresh connection (as llama.vim's ``curl`` does) and read the JSON answer."""
    host, _, port = url.split("://", 1)[1].partition(":")
    payload = json.dumps(body).encode()
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        head += f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
        writer.write(head.encode() + payload)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    header, _, data = raw.partition(b"\r\n\r\n")
    status = header.split(b" ", 2)[1:2]
    if status != [b"200"]:
        raise RuntimeError(f"HTTP {status[0].decode() if status else '?'}: {data[:200]!r}")
    if b"transfer-encoding: chunked" in header.lower():
        data = _unchunk(data)
    answer = json.loads(data)
    return answer if isinstance(answer, dict) else {}


def _unchunk(data: bytes) -> bytes:
    out = bytearray()
    while data:
        size, _, rest = data.partition(b"\r\n")
        n = int(size.split(b";")[0] or b"0", 16)
        if n == 0:
            break
        out += rest[:n]
        data = rest[n + 2 :]
    return bytes(out)
