"""How much one write step may insert: the largest step whose WAL frames (and the deletions that
make room for its rows) stay out of the reserve, whatever the free space."""

from __future__ import annotations

from edge.store.space import Room


def test_rows_that_fit_is_the_largest_step_that_keeps_out_of_the_reserve() -> None:
    most = 5000
    outcomes = set()
    for pages, free_pages in ((100, 0), (25_000, 3_000), (250_000, 0)):
        for free in range(0, 64 * 1024**2, 97 * 1024):
            room = Room(free, 32 * 1024**2 // 8, 4096, pages, free_pages, 45.0, pages * 4096)
            fitting = [r for r in range(0, most + 1, 50) if room.step_wal(r, most) <= room.spare]
            want = max(fitting) if fitting else 0
            got = room.rows_that_fit(most)
            assert want <= got < want + 50 or (got == most and want == most), (free, pages, got, want)
            assert got == 0 or room.step_wal(got, most) <= room.spare
            assert got == most or room.step_wal(got + 1, most) > room.spare
            outcomes.add("none" if got == 0 else "full" if got == most else "part")
    assert outcomes == {"none", "part", "full"}
