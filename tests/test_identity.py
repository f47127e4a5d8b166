"""Identity key files and the `repp2p keys` commands."""

from __future__ import annotations

import os
import stat

import pytest

from repp2p.cli import main
from repp2p.errors import KeyFileError
from repp2p.identity import Identity


def test_key_file_is_0600_and_round_trips(tmp_path):
    path = tmp_path / "sub" / "node.key"
    identity = Identity.generate()
    old_umask = os.umask(0)  # a permissive umask must not leak into the key file's mode
    try:
        identity.save(path)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Identity.load(path).peer_id == identity.peer_id


def test_key_file_readable_by_others_is_refused(tmp_path):
    path = tmp_path / "node.key"
    Identity.generate().save(path)
    for mode in (0o644, 0o640, 0o604, 0o660):
        path.chmod(mode)
        with pytest.raises(KeyFileError, match="accessible by others"):
            Identity.load(path)


def test_existing_key_is_not_overwritten_unless_asked(tmp_path):
    path = tmp_path / "node.key"
    first = Identity.generate()
    first.save(path)
    with pytest.raises(KeyFileError, match="exists"):
        Identity.generate().save(path)
    assert Identity.load(path).peer_id == first.peer_id
    second = Identity.generate()
    second.save(path, overwrite=True)
    assert Identity.load(path).peer_id == second.peer_id


def test_malformed_and_missing_key_files(tmp_path):
    with pytest.raises(KeyFileError, match="cannot open"):
        Identity.load(tmp_path / "absent.key")
    path = tmp_path / "bad.key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"\x08\x00\x12\x20" + b"\x00" * 32)  # an RSA-typed key header
    os.close(fd)
    with pytest.raises(KeyFileError, match="not a libp2p"):
        Identity.load(path)


def test_interoperates_with_py_libp2p_key_files(tmp_path):
    from libp2p.crypto.ed25519 import create_new_key_pair
    from libp2p.identity_utils import load_identity, save_identity
    from libp2p.peer.id import ID

    ours = tmp_path / "ours.key"
    identity = Identity.generate()
    identity.save(ours)
    assert ID.from_pubkey(load_identity(ours).public_key).to_base58() == identity.peer_id
    theirs = tmp_path / "theirs.key"
    keypair = create_new_key_pair()
    save_identity(keypair, theirs)
    assert Identity.load(theirs).peer_id == ID.from_pubkey(keypair.public_key).to_base58()


def test_go_libp2p_64_byte_form_is_accepted_and_checked():
    identity = Identity.from_seed(b"\x05" * 32)
    go_form = b"\x08\x01\x12\x40" + bytes(identity.signing_key) + identity.public_key
    assert Identity.from_bytes(go_form).peer_id == identity.peer_id
    with pytest.raises(KeyFileError, match="does not match"):
        Identity.from_bytes(go_form[:-1] + bytes([go_form[-1] ^ 1]))


def test_cli_keys_new_and_show(tmp_path, capsys):
    path = tmp_path / "cli.key"
    assert main(["keys", "new", str(path)]) == 0
    created = capsys.readouterr().out.strip()
    assert created.startswith("12D3KooW")
    assert main(["keys", "show", str(path)]) == 0
    assert capsys.readouterr().out.strip() == created
    path.chmod(0o644)
    assert main(["keys", "show", str(path)]) == 1
    assert "accessible by others" in capsys.readouterr().err
    assert main(["keys", "new", str(path)]) == 1
    assert "refusing to overwrite" in capsys.readouterr().err


def test_walkthrough_runs_real_operations(tmp_path, capsys):
    assert main(["walkthrough", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "equivocation" in out and "rejected (bad_signature)" in out
    assert (tmp_path / "records.db").exists()
    assert stat.S_IMODE((tmp_path / "node.key").stat().st_mode) == 0o600
