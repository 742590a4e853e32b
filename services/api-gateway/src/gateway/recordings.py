"""A call's recording, served by the recordings service through its internal API.

The audio is streamed through chunk by chunk, never held whole in memory; `Range` goes up and
`Content-Range`, `Content-Length` and `Accept-Ranges` come back, so players can seek.
"""

from __future__ import annotations

import uuid
from typing import Final

import aiohttp
import structlog
from aiohttp import web
from calls_platform.http import CORRELATION_HEADER, CORRELATION_KEY, json_error

from .context import RECORDINGS, principal
from .reads import internal_path

log = structlog.get_logger(__name__)

CHUNK_BYTES: Final = 64 * 1024
# What the recordings service answers that is passed on to the client as it is.
_PASSED_ON: Final = frozenset({200, 206, 404, 416})
_RESPONSE_HEADERS: Final = ("Content-Type", "Content-Length", "Content-Range", "Accept-Ranges")


def _path(request: web.Request) -> str | None:
    call_id = request.match_info["call_id"]
    try:
        uuid.UUID(call_id)
    except ValueError:
        return None
    return internal_path(request, "calls", call_id, "recording")


def _not_found() -> web.Response:
    return json_error(404, "not_found", "no recording stored for this call")


def _unavailable(exc: BaseException | None = None, status: int | None = None) -> web.HTTPBadGateway:
    log.error("recordings_service_unavailable", error=repr(exc) if exc else None, status=status)
    return web.HTTPBadGateway(text="recordings service unavailable")


async def get_recording(request: web.Request) -> web.StreamResponse:
    path = _path(request)
    if path is None:
        return _not_found()
    headers = {CORRELATION_HEADER: request[CORRELATION_KEY]}
    if "Range" in request.headers:
        headers["Range"] = request.headers["Range"]
    try:
        return await _relay_recording(request, path, headers)
    except aiohttp.ClientConnectionError as exc:  # nothing was sent yet
        raise _unavailable(exc) from None


async def _relay_recording(
    request: web.Request, path: str, headers: dict[str, str]
) -> web.StreamResponse:
    # HEAD asks HEAD: a player checking the size must not start a download upstream
    method = "HEAD" if request.method == "HEAD" else "GET"
    async with request.app[RECORDINGS].request(method, path, headers=headers) as upstream:
        if upstream.status not in _PASSED_ON:
            raise _unavailable(status=upstream.status)
        passed = {k: upstream.headers[k] for k in _RESPONSE_HEADERS if k in upstream.headers}
        if upstream.status in (404, 416):  # a small JSON error (none to a HEAD)
            return web.Response(
                body=await upstream.read(),
                status=upstream.status,
                content_type="application/json",
                headers={
                    k: v for k, v in passed.items() if k in ("Content-Range", "Accept-Ranges")
                },
            )
        response = web.StreamResponse(status=upstream.status, headers=passed)
        # set here: the shared middleware adds it only to responses not yet sent
        response.headers[CORRELATION_HEADER] = request[CORRELATION_KEY]
        await response.prepare(request)
        if method == "HEAD":  # aiohttp would send whatever is written, even to a HEAD
            await response.write_eof()
            return response
        try:
            async for chunk in upstream.content.iter_chunked(CHUNK_BYTES):
                await response.write(chunk)
        except ConnectionResetError:
            # the client went away (a player seeking elsewhere): leaving the block closes the
            # upstream request too
            return response
        except (aiohttp.ClientError, TimeoutError) as exc:
            # too late for an error response: cut the connection, so the client sees the
            # body end short of Content-Length rather than a complete-looking file
            log.warning("recording_stream_broke_off", error=repr(exc))
            if request.transport is not None:
                request.transport.close()
            return response
        await response.write_eof()
        return response


async def delete_recording(request: web.Request) -> web.Response:
    path = _path(request)
    if path is None:
        return _not_found()
    headers = {
        CORRELATION_HEADER: request[CORRELATION_KEY],
        "X-Requested-By": principal(request).subject,
    }
    try:
        async with request.app[RECORDINGS].delete(path, headers=headers) as upstream:
            status = upstream.status
    except aiohttp.ClientConnectionError as exc:
        raise _unavailable(exc) from None
    if status == 204:
        return web.Response(status=204)
    if status == 404:
        return _not_found()
    raise _unavailable(status=status)
