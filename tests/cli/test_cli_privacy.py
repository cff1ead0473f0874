"""`fleetlite privacy epsilon` against a real server."""

from __future__ import annotations

import json
import shlex

from tests.cli.support import cli, field, ok
from tests.helpers import LiveServer
from tests.test_readme import blocks, section

MNIST = ("--population", "60000", "--per-round", "150", "--rounds", "6000",
         "--sampling", "poisson")


def test_privacy_epsilon_prints_the_epsilon(server: LiveServer) -> None:
    out = ok(cli(server, "privacy", "epsilon", *MNIST, "--noise-multiplier", "1.3")).stdout
    assert field(out, "epsilon") == "0.724223"
    assert field(out, "noise") == "1.3" and field(out, "delta") == "1e-05"
    assert "150 of 60000 devices a round (poisson, q = 0.0025), 6000 rounds" in out
    assert "rdp, add or remove one" in out


def test_privacy_epsilon_finds_the_noise_multiplier_as_json(server: LiveServer) -> None:
    result = ok(cli(server, "--json", "privacy", "epsilon", *MNIST, "-e", "0.725"))
    body = json.loads(result.stdout)
    assert body["noise_multiplier"] == 1.3 and body["epsilon"] <= 0.725


def test_privacy_epsilon_without_replacement_names_replace_one(server: LiveServer) -> None:
    out = ok(cli(server, "privacy", "epsilon", "-N", "100", "-m", "10", "-r", "20",
                 "-z", "1.0")).stdout
    assert "replace one (event noise multiplier 0.5)" in out


def test_privacy_epsilon_needs_one_of_noise_and_target(server: LiveServer) -> None:
    result = cli(server, "privacy", "epsilon", *MNIST)
    assert result.exit_code == 2
    assert "exactly one of --noise-multiplier and --target-epsilon" in result.stderr


def test_privacy_epsilon_shows_the_servers_422(server: LiveServer) -> None:
    result = cli(server, "privacy", "epsilon", *MNIST, "-z", "1.0", "--delta", "2")
    assert result.exit_code == 2
    assert "delta" in result.stderr and "less than 1" in result.stderr


def test_readme_privacy_example_prints_what_it_shows(server: LiveServer) -> None:
    text = section("Privacy: DP-FedAvg and the planner")
    (commands,) = blocks(text, "sh")
    (shown,) = blocks(text, "")
    printed = ""
    for line in commands.splitlines():
        words = shlex.split(line)
        assert words[0] == "fleetlite", line
        printed += ok(cli(server, *words[1:])).stdout
    assert printed.splitlines() == shown.splitlines()
