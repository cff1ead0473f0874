"""Two users personalize one base model over real HTTP: the demo, asserted."""

from __future__ import annotations

from app import demo
from tests.helpers import LiveServer


def test_two_users_personalize_the_same_base_model(server: LiveServer, mlp_bytes: bytes) -> None:
    result = demo.run(server.url, mlp_bytes, epochs=6, seed=0)
    for user in result.users:
        assert user.accuracy >= 0.90, user
    assert result.disagreement >= 0.40
    assert result.users[0].session_id != result.users[1].session_id
