"""A mistyped option gets the subcommand's own usage and the closest option, not the top-level usage."""

import pytest

from imagecluster.cli import main


@pytest.mark.parametrize("argv, usage, hint", [
    (["cluster", "photos", "--smi", "0.8"], "usage: imagecluster cluster ", "--smi 0.8 (did you mean --sim?)"),
    (["index", "photos", "--batchsize=4"], "usage: imagecluster index ", "--batchsize=4 (did you mean --batch-size?)"),
    (["remote", "status", "--timout", "5"], "usage: imagecluster remote status ", "(did you mean --timeout?)"),
])
def test_a_mistyped_option_names_the_one_meant(argv, usage, hint, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert err.startswith(usage), err
    assert "error: unrecognized arguments: " in err and err.rstrip().endswith(hint), err


def test_an_unknown_argument_without_a_close_option_gets_no_guess(capsys):
    with pytest.raises(SystemExit):
        main(["cluster", "photos", "more-photos"])
    err = capsys.readouterr().err
    assert err.startswith("usage: imagecluster cluster ") and err.endswith("unrecognized arguments: more-photos\n")
