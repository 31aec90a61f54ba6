"""optmm._once: an installer patches on its first call alone and answers the same after."""

from __future__ import annotations

from optmm._once import once


def test_a_patch_runs_once_and_its_first_answer_stays():
    calls: list[str] = []

    @once
    def patch() -> bool:
        calls.append("patched")
        return True

    assert not patch.installed()
    assert patch() and patch() and patch.installed()
    assert calls == ["patched"] and patch.__name__ == "patch"


def test_a_patch_that_fails_or_asks_again_meanwhile_is_not_installed():
    seen: list[bool] = []

    @once
    def patch() -> bool:
        seen.append(patch())  # asked again while it runs: not yet
        return False

    assert patch() is False and patch() is False and seen == [False]
    assert not patch.installed()
