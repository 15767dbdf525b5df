"""Planned maintenance through the shim: a draining server's keys are read
from it once and moved to their substitute; writes go to the substitute."""

from test_preload import SANITIZED, client_says, drain_holding, holders, shim_fleet  # noqa: F401 (a fixture)


def test_drain_moves_values_as_a_preloaded_client_reads(shim_fleet):
    fleet = shim_fleet
    n = 200
    keys = [f"d{i}" for i in range(n)]
    assert client_says(fleet, "c", "set-many", "d", n, 0) == f"stored {n}"
    draining = fleet.servers[1]
    before = holders(fleet, keys)
    on_draining = drain_holding(fleet, draining, keys)

    # Every read hits: a miss on the substitute finds the value on the
    # draining server, which gives it up.
    assert client_says(fleet, "c", "get-many", "d", n) == f"hits {n}"
    after = holders(fleet, keys)
    for k in on_draining:
        assert len(after[k]) == 1 and after[k] != [draining.address], k
    assert all(after[k] == before[k] for k in keys if k not in on_draining)
    # Nothing left to read there: the operator can stop it without a miss storm.
    assert draining.command(b"stats\r\n", expect_end=b"END\r\n").count(b"STAT curr_items 0\r\n") == 1

    # Writes while draining go to the substitute; the draining copy goes.
    assert client_says(fleet, "c", "set", on_draining[0], "newer", 0) == "SUCCESS"
    assert holders(fleet, [on_draining[0]])[on_draining[0]] != [draining.address]
    assert client_says(fleet, "c", "get", on_draining[0]) == "VALUE newer"

    # A multi-get moves values the same way (PHP reads only this way). Each
    # client places keys its own way: each writes its own keys natively first.
    # (Not PHP in a sanitizer build: its RTLD_DEEPBIND dlopen is refused there.)
    for client, prefix in [("c", "e")] + ([] if SANITIZED else [("php", "p")]):
        assert client_says(fleet, client, "set-many", prefix, n, 0, shim=False) == f"stored {n}"
        placed = holders(fleet, [f"{prefix}{i}" for i in range(n)])
        on_draining = [k for k, v in placed.items() if v == [draining.address]]
        assert on_draining
        assert client_says(fleet, client, "mget-many", prefix, n) == f"found {n}"
        assert all(draining.address not in v for v in holders(fleet, on_draining).values()), client
