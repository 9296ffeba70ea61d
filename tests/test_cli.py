import os

import salclass.cli as cli


def test_closed_output_pipe_ends_quietly(monkeypatch):
    # What `salclass models | head -1` does once the reader has gone away.
    def reader_gone(_args):
        raise BrokenPipeError

    saved = os.dup(1)
    try:
        monkeypatch.setattr(cli, "_run_models", reader_gone)
        assert cli.main(["models"]) == 0
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def test_user_errors_are_one_line_with_exit_code_2(run_cli):
    code, out, err = run_cli("prepare", "/nonexistent-folder", "/tmp/never-written", "--size", "144")
    assert code == 2 and out == ""
    assert err.startswith("salclass: error: ") and err.count("\n") == 1
