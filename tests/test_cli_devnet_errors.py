"""A devnet node that does not start: the error carries the end of its log, which a
temporary devnet folder no longer holds once the command has exited."""

from __future__ import annotations

import pytest

from repp2p.cli import main
from repp2p.cli.devnet import log_tail

pytestmark = pytest.mark.slow


def test_a_node_that_does_not_start_reports_its_log(capsys):
    assert main(["devnet", "--nodes", "1", "--engines", "no-such-engine", "--duration", "1"]) == 1
    err = capsys.readouterr().err
    assert "bootstrap did not start" in err and "node.log ends with:" in err
    # The node's own error line, from its log.
    assert "no engine 'no-such-engine' installed" in err


def test_log_tail_keeps_the_last_lines(tmp_path):
    path = tmp_path / "node.log"
    path.write_text("".join(f"line {i}\n" for i in range(100)))
    assert log_tail(path, 3) == "  line 97\n  line 98\n  line 99"
    path.write_text("")
    assert "empty" in log_tail(path)
    assert "cannot read" in log_tail(tmp_path / "missing.log")
