"""The recordings service's internal API, called by the gateway with an organization in the path:
stream a call's stored recording (whole, or one byte range of it), or delete it.

Not exposed outside the cluster (the NetworkPolicy lets only the gateway in). The file to
serve is found by organization and call in the recordings table; its storage key was built
by this service when it stored it, never from anything in the request.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web
from calls_platform.db import Conn, Pool
from calls_platform.http import CORRELATION_HEADER, CORRELATION_KEY, json_error

from . import catalog
from .domain import RangeNotSatisfiable, parse_range
from .storage import NotStored, Storage

log = structlog.get_logger(__name__)

POOL: web.AppKey[Pool] = web.AppKey("pool")
STORAGE: web.AppKey[Storage] = web.AppKey("storage")

ROUTE = "/internal/orgs/{org}/calls/{call_id}/recording"
REQUESTED_BY_HEADER = "X-Requested-By"


def setup_routes(app: web.Application) -> None:
    app.router.add_get(ROUTE, get_recording)
    app.router.add_delete(ROUTE, delete_recording)


def _not_found() -> web.Response:
    return json_error(404, "not_found", "no recording stored for this call")


async def _stored(request: web.Request) -> catalog.Recording | None:
    return await _recording(request, catalog.find_stored)


async def _recording(
    request: web.Request,
    find: Callable[[Conn, str, uuid.UUID], Awaitable[catalog.Recording | None]],
) -> catalog.Recording | None:
    """The request's recording as `find` looks it up (org and call id from the path)."""
    try:
        call_id = uuid.UUID(request.match_info["call_id"])
    except ValueError:
        return None
    async with request.app[POOL].connection() as conn:
        return await find(conn, request.match_info["org"], call_id)


async def get_recording(request: web.Request) -> web.StreamResponse:
    recording = await _stored(request)
    if recording is None or recording.storage_key is None or recording.size_bytes is None:
        return _not_found()
    try:
        byte_range = parse_range(request.headers.get("Range"), recording.size_bytes)
    except RangeNotSatisfiable as exc:
        return json_error(
            416,
            "range_not_satisfiable",
            str(exc),
            headers={"Content-Range": exc.content_range, "Accept-Ranges": "bytes"},
        )
    try:
        size, chunks = await request.app[STORAGE].open(recording.storage_key, byte_range)
    except NotStored:
        log.error(
            "recording_missing_from_storage",
            recording_sid=recording.recording_sid,
            storage_key=recording.storage_key,
        )
        return _not_found()
    try:
        response = web.StreamResponse(status=206 if byte_range else 200)
        response.content_type = recording.content_type or "audio/wav"
        response.content_length = byte_range.length if byte_range else size
        response.headers["Accept-Ranges"] = "bytes"
        if byte_range:
            response.headers["Content-Range"] = byte_range.content_range
        # set here: the shared middleware adds it only to responses not yet sent
        response.headers[CORRELATION_HEADER] = request[CORRELATION_KEY]
        await response.prepare(request)
        if request.method != "HEAD":  # HEAD: the headers only (aiohttp would send a body)
            async for chunk in chunks:
                await response.write(chunk)
        await response.write_eof()
    except ConnectionResetError:
        pass  # the client went away (a player seeking elsewhere): stop reading storage
    finally:
        await chunks.aclose()
    return response


async def delete_recording(request: web.Request) -> web.Response:
    """Three short steps, none holding a transaction open while storage works (an open
    writing transaction holds back every event-store reader): stop serving it (deleting),
    remove the audio, record the deletion with its event. Storage refusing puts the recording
    back as it was; a deletion cut short between the steps is finished by repeating DELETE."""
    recording = await _recording(request, catalog.find_deletable)
    if recording is None or recording.storage_key is None:
        return _not_found()
    pool = request.app[POOL]
    async with pool.connection() as conn:
        if not await catalog.begin_delete(conn, recording):
            return _not_found()  # deleted meanwhile
    requested_by = request.headers.get(REQUESTED_BY_HEADER, "unknown")[:255]
    try:
        await request.app[STORAGE].delete(recording.storage_key)  # absent already: fine
    except Exception:
        async with pool.connection() as conn:
            await catalog.undo_delete(conn, recording)
        raise
    async with pool.connection() as conn, conn.transaction():
        if not await catalog.mark_deleted(conn, recording, requested_by=requested_by):
            return _not_found()  # another DELETE finished it meanwhile
    log.info("recording_deleted", recording_sid=recording.recording_sid, requested_by=requested_by)
    return web.Response(status=204)
