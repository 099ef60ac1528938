"""The labelling page and its JSON API: routes only (the work is
:class:`~emofuse.labelling.desk.LabellingDesk`). Secured like `emofuse serve`, with the
same middleware (:func:`emofuse.serve.security.install_security`): tokens, Host and Origin
checks, hardening headers, an access log without request data, a body limit.

The annotator of a request is the name its token was given under in the token file
(``token-`` and 8 hex digits of its digest for a bare token, so two bare tokens are two
annotators); a server without tokens records everyone under one
name (``--annotator``)."""

from __future__ import annotations

import logging
import mimetypes
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Form
from fastapi import Path as PathParam
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.requests import Request

from emofuse.corpus.answers import ANONYMOUS
from emofuse.labelling.desk import LabellingDesk, NoAudio, UnknownClip
from emofuse.labelling.schemas import AnswerOut, NextOut, SkipOut, UndoOut, answer_out, next_out
from emofuse.labels import UnknownLabelError
from emofuse.palette import label_colours
from emofuse.serve.body_limit import BodyLimitMiddleware
from emofuse.serve.errors import app_version, install_error_handlers
from emofuse.serve.redact import PathRedactor, ServerPathsMiddleware, server_folders
from emofuse.serve.schemas import RequestProblem, error_responses

log = logging.getLogger("emofuse.labelling")
STATIC_DIR = Path(__file__).with_name("static")
#: A label answer is two short form fields.
MAX_BODY_BYTES = 64 * 1024

ClipId = Annotated[str, Form(min_length=1, max_length=1000, description="The clip's id.")]


def create_label_app(
    desk: LabellingDesk, *, security: Any = None, annotator: str = ANONYMOUS
) -> FastAPI:
    """The FastAPI app of the labelling page for ``desk``. ``security`` (an
    :class:`emofuse.serve.security.SecuritySettings`) wraps it as `emofuse serve` is
    wrapped; ``annotator`` names whoever answers on a server without tokens."""
    tokens = getattr(security, "tokens", None)
    labels = list(desk.labels.names)
    colours = label_colours(labels)
    app = FastAPI(
        title="emofuse labelling page",
        version=app_version(),
        description=(
            f"Label the clips of a pool, one at a time: {len(desk.queue.order)} clips, labels "
            f"{', '.join(labels)}. Every answer is appended to answers.csv at once; an undo "
            "is appended as a retraction."
        ),
        docs_url=None,  # offline docs below
        redoc_url=None,
    )
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=MAX_BODY_BYTES)
    folders = server_folders()
    for place in (desk.pool.source.parent, desk.answers_path.absolute().parent):
        folders[str(place)] = "<server>"
    app.add_middleware(ServerPathsMiddleware, redactor=PathRedactor(folders))
    app.state.desk = desk

    def who(request: Request) -> str:
        if tokens is None:
            return annotator
        scheme, _, token = request.headers.get("authorization", "").strip().partition(" ")
        holder = tokens.holder(token.strip()) if scheme.lower() == "bearer" else None
        if holder is None:  # the gate refuses these first; a token revoked in between
            raise RequestProblem(401, "the API token is not valid")
        return holder

    install_error_handlers(app, log)

    @app.get("/label/next", response_model=NextOut, summary="The clip to label next")
    def label_next(request: Request) -> NextOut:
        """The same clip until it is answered or skipped; ``clip`` is null when this
        annotator has answered every clip. Also the progress and the latest answer."""
        return next_out(desk.view(who(request)), labels, colours)

    @app.get(
        "/label/audio/{id:path}",
        responses={200: {"content": {"audio/wav": {}}}, **error_responses(404)},
        response_class=FileResponse,
        summary="The audio of a clip of the pool, by its id",
    )
    def label_audio(
        request: Request,
        id: Annotated[str, PathParam(description="The clip's id in the pool.")],  # noqa: A002
    ) -> FileResponse:
        """Looked up by the pool's id only: an id the pool does not hold (a path
        included) is 404 and never reaches the file system; so is a text-only clip."""
        who(request)
        try:
            path = desk.audio_file(id)
        except UnknownClip as err:
            raise RequestProblem(404, str(err)) from None
        except NoAudio as err:
            raise RequestProblem(404, str(err)) from None
        media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return FileResponse(path, media_type=media_type)

    @app.post(
        "/label",
        response_model=AnswerOut,
        responses=error_responses(400, 422),
        summary="Label a clip (appended to answers.csv at once)",
    )
    def label(
        request: Request,
        id: ClipId,  # noqa: A002 - the form field's name
        label: Annotated[
            str, Form(min_length=1, max_length=200, description="A label of the set.")
        ],
    ) -> AnswerOut:
        """A second answer by the same annotator on a clip replaces theirs; answers of
        other annotators stay beside it."""
        try:
            return answer_out(desk.answer(who(request), id, label))
        except UnknownClip as err:
            raise RequestProblem(422, f"field 'id': {err}") from None
        except UnknownLabelError as err:
            raise RequestProblem(422, f"field 'label': {err}") from None

    @app.post(
        "/label/undo",
        response_model=UndoOut,
        summary="Withdraw this annotator's latest answer (appended as a retraction)",
    )
    def label_undo(request: Request) -> UndoOut:
        """The undone clip is served again next."""
        undone = desk.undo(who(request))
        return UndoOut(undone=None if undone is None else answer_out(undone))

    @app.post(
        "/label/skip",
        response_model=SkipOut,
        responses=error_responses(422),
        summary="Put a clip behind the rest for this annotator (nothing is written)",
    )
    def label_skip(request: Request, id: ClipId) -> SkipOut:  # noqa: A002
        try:
            desk.skip(who(request), id)
        except UnknownClip as err:
            raise RequestProblem(422, f"field 'id': {err}") from None
        return SkipOut(skipped=id)

    @app.get("/health", summary="Liveness")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.mount("/static/label", StaticFiles(directory=STATIC_DIR), name="label-static")
    _add_docs(app)
    if security is not None:  # never serve without the asked-for protection
        from emofuse.serve.security import install_security

        install_security(app, security)
    return app


def _add_docs(app: FastAPI) -> None:
    """The service's static files at /static (the API token form's script and style, the
    offline Swagger UI page's) and the API docs at /docs."""
    from emofuse.serve.app import STATIC_DIR as SERVE_STATIC
    from emofuse.serve.app import add_offline_docs

    app.mount("/static", StaticFiles(directory=SERVE_STATIC), name="static")
    add_offline_docs(app)
