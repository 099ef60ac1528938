"""Who answers on the label server, and one server per answers.csv: a token file line that
holds two tokens or a token twice is refused (so a secret never becomes a name in
answers.csv); bare tokens are separate annotators; a second `emofuse label` on the same
answers.csv stops at start-up, while the first one's appends never wait on its lock."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import threading

import pytest
from test_label_api import (
    LABELS,
    TOKEN_ALICE,
    TOKEN_BARE,
    TOKEN_BOB,
    auth,
    client_for,
    make_desk,
    make_pool,
)

from emofuse.cli import main
from emofuse.corpus.answers import ANONYMOUS, append_answer, read_answers, resolve_answers
from emofuse.labelling.answers_lock import AnswersBusy, lock_answers
from emofuse.serve.tokens import TokenError, Tokens, bare_token_name, parse_named_tokens


def _name_of(token: str) -> str:
    return bare_token_name(hashlib.sha256(token.encode()).digest())


# ---------------------------------------------------------------- the token file


def test_two_tokens_on_one_line_are_refused_naming_the_file_and_line(tmp_path):
    path = tmp_path / "tokens.txt"
    path.write_text(f"alice {TOKEN_ALICE}\n{TOKEN_BOB} {TOKEN_BARE}\n")
    with pytest.raises(TokenError, match=r"tokens\.txt, line 2: two tokens on one line\?") as err:
        Tokens.from_file(path)
    assert TOKEN_BOB not in str(err.value) and TOKEN_BARE not in str(err.value)
    # A short name of token characters is a name, not a token.
    assert parse_named_tokens([f"mina.k {TOKEN_BOB}"], "t")[0] == ("mina.k", TOKEN_BOB)


def test_a_token_listed_twice_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "tokens.txt"
    path.write_text(f"alice {TOKEN_ALICE}\n# a comment\nbob {TOKEN_ALICE}\n")
    with pytest.raises(TokenError, match=r"line 3: the same token as line 1") as err:
        Tokens.from_file(path)
    assert TOKEN_ALICE not in str(err.value)
    with pytest.raises(TokenError, match="a token twice"):
        Tokens.from_env(f"{TOKEN_BOB},{TOKEN_BOB}")
    # A rotation that lists a token twice keeps the tokens accepted before it.
    import emofuse.serve.tokens as tokens_module

    monkeypatch.setattr(tokens_module, "RELOAD_EVERY_S", 0.0)
    path.write_text(f"alice {TOKEN_ALICE}\n")
    tokens = Tokens.from_file(path)
    path.write_text(f"alice {TOKEN_ALICE}\nbob {TOKEN_BOB}\neve {TOKEN_BOB}\n")
    assert tokens.holder(TOKEN_ALICE) == "alice" and tokens.holder(TOKEN_BOB) is None


def test_authentication_does_not_need_the_answers_module():
    code = "import sys, emofuse.serve.tokens; print('emofuse.corpus.answers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------- bare tokens


def test_two_bare_tokens_are_two_annotators_and_both_answers_are_kept(tmp_path):
    pool = make_pool(tmp_path / "pool")
    answers = tmp_path / "answers.csv"
    client = client_for(make_desk(pool, answers), Tokens([TOKEN_BOB, TOKEN_BARE]))
    first, second = auth(TOKEN_BOB), auth(TOKEN_BARE)
    assert client.post("/label", data={"id": "clip0", "label": "calm"}, headers=first).is_success
    # The second walks the order on their own: clip0 is their next too.
    assert client.get("/label/next", headers=second).json()["clip"]["id"] == "clip0"
    assert client.post("/label", data={"id": "clip0", "label": "sad"}, headers=second).is_success
    names = {_name_of(TOKEN_BOB), _name_of(TOKEN_BARE)}
    assert len(names) == 2 and ANONYMOUS not in names
    assert resolve_answers(answers).by_annotator["clip0"] == {
        _name_of(TOKEN_BOB): "calm",
        _name_of(TOKEN_BARE): "sad",
    }
    view = client.get("/label/next", headers=second).json()
    assert view["annotator"] == _name_of(TOKEN_BARE) and view["progress"]["ties"] == 1
    text = answers.read_text()
    assert TOKEN_BOB not in text and TOKEN_BARE not in text  # names, never secrets


# ---------------------------------------------------------------- one server per file


def test_the_lifetime_lock_refuses_a_second_server_and_never_blocks_appends(tmp_path):
    answers = tmp_path / "answers.csv"
    with lock_answers(answers) as lock:
        if not lock.enforced:
            pytest.skip("no open-file-description locks on this platform")
        with pytest.raises(AnswersBusy, match="another `emofuse label`"):
            lock_answers(answers)
        # The appends of the same process (flock on their own descriptor) go through.
        done = threading.Event()

        def write() -> None:
            append_answer(answers, id="clip0", label="calm", annotator="mina")
            done.set()

        threading.Thread(target=write, daemon=True).start()
        assert done.wait(10), "an append waited on the server's own lock"
        # The append closed its descriptor; the lock is still held (unlike a lockf lock).
        with pytest.raises(AnswersBusy):
            lock_answers(answers)
        other = subprocess.run(
            [sys.executable, "-c", "import sys; from emofuse.labelling.answers_lock import "
             "lock_answers; lock_answers(sys.argv[1])", str(answers)],
            capture_output=True, text=True,
        )  # fmt: skip
        assert other.returncode != 0 and "AnswersBusy" in other.stderr
    lock_answers(answers).release()  # released with the server
    assert [a.id for a in read_answers(answers).answers] == ["clip0"]


def test_a_second_label_command_on_the_same_answers_exits_with_a_message(tmp_path, capsys):
    pool = make_pool(tmp_path / "pool")
    answers = tmp_path / "answers.csv"
    with lock_answers(answers) as lock:
        if not lock.enforced:
            pytest.skip("no open-file-description locks on this platform")
        assert main(["label", str(pool), "-o", str(answers), "--label-set", LABELS]) == 2
    err = capsys.readouterr().err
    assert "answers.csv" in err and "already serving this answers file" in err
    assert not answers.exists() or answers.stat().st_size == 0  # nothing else written
    assert sorted(p.name for p in tmp_path.iterdir()) == (
        ["answers.csv", "pool"] if answers.exists() else ["pool"]
    )


def test_both_pages_take_the_token_with_one_shared_script(tmp_path):
    from emofuse.serve.app import STATIC_DIR

    client = client_for(make_desk(make_pool(tmp_path / "pool"), tmp_path / "a.csv"))
    page = client.get("/").text
    assert page.index("/static/token.js") < page.index("/static/label/app.js")
    served = client.get("/static/token.js")
    assert served.status_code == 200 and served.text == (STATIC_DIR / "token.js").read_text()
    assert "/static/token.js" in (STATIC_DIR / "index.html").read_text()
    for storage in ("localStorage", "sessionStorage", "document.cookie", "indexedDB"):
        assert storage not in served.text
