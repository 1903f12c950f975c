"""Running the ``sepzoo`` command in-process and checking its one-line errors, for CLI tests."""

from __future__ import annotations

from sepzoo.cli.main import main


def run(capsys, *args: str) -> tuple[int, str, str]:
    """Run ``sepzoo ARGS...``; its exit status, standard output and standard error."""
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    """Exit status 2 and one line on standard error, holding every fragment, no traceback."""
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
