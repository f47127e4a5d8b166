"""``repp2p gateway``'s settings are refused with one clear line before it joins anything."""

from __future__ import annotations

import pytest

from repp2p.cli import main

BOOT = [
    "--bootstrap",
    "/ip4/127.0.0.1/tcp/1/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN",
]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--listen", "localhost:8080"], "expected IP:PORT"),
        (["--listen", "127.0.0.1:99999"], "expected IP:PORT"),
        (["--redundancy", "0"], "redundancy"),
        (["--timeout", "0"], "timeout_s"),
        (["--max-body", "10"], "max_body_bytes"),
        (["--max-requests", "0"], "max_requests"),
        (["--token-file", "/nonexistent/token"], "cannot read --token-file"),
        (["--network", "nowhere"], "no network file"),
    ],
)
def test_bad_settings_are_one_line(argv, message, capsys, monkeypatch):
    monkeypatch.delenv("REPP2P_GATEWAY_TOKEN", raising=False)
    assert main(["gateway", *BOOT, *argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith("repp2p: error:") and message in err and "Traceback" not in err


def test_a_short_token_is_refused(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("REPP2P_GATEWAY_TOKEN", "short")
    assert main(["gateway", *BOOT]) == 1
    assert "at least 16 printable characters" in capsys.readouterr().err
    token = tmp_path / "token"
    token.write_text("also short\n")
    assert main(["gateway", *BOOT, "--token-file", str(token)]) == 1
    assert "at least 16 printable characters" in capsys.readouterr().err


def test_without_the_extra_it_says_what_to_install(capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "hypercorn.trio", None)  # as if not installed
    assert main(["gateway", *BOOT]) == 1
    err = capsys.readouterr().err
    assert "pip install 'repp2p[gateway]'" in err and "hypercorn" in err


def test_a_token_file_is_trimmed_bounded_and_kept_private(capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("REPP2P_GATEWAY_TOKEN", raising=False)
    token = tmp_path / "token"
    token.write_text("  a-long-enough-token-0001\r\n")  # trimmed: a valid token
    token.chmod(0o644)
    # A later setting fails, so the run stops after reading the token.
    assert main(["gateway", *BOOT, "--token-file", str(token), "--redundancy", "0"]) == 1
    err = capsys.readouterr().err
    assert "can be read by other users" in err and "redundancy" in err
    assert "at least 16" not in err  # the trimmed token was accepted
    token.chmod(0o600)
    assert main(["gateway", *BOOT, "--token-file", str(token), "--redundancy", "0"]) == 1
    assert "other users" not in capsys.readouterr().err
    huge = tmp_path / "huge"
    huge.write_bytes(b"x" * 100_000)
    assert main(["gateway", *BOOT, "--token-file", str(huge)]) == 1
    assert "over 4096 bytes" in capsys.readouterr().err
