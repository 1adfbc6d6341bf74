"""The IRequestLogStore contract, run against the memory twin and real Redis.

A backend mixes in :class:`RequestLogStoreContract` with a ``make_store(retention)``
that returns a fresh, empty store keeping records ``retention`` seconds.
"""

from __future__ import annotations

from twisted.trial.unittest import TestCase

from oauthproxy.interfaces import IRequestLogStore
from oauthproxy.requestlog.noise import NoiseCount
from oauthproxy.requestlog.record import RequestRecord, record_row
from tests.requestlog.samples import T0, sample

DAY = 86400.0


class RequestLogStoreContract(TestCase):
    """What every request-log store does."""

    def make_store(self, retention: float = DAY, max_records: int = 100_000) -> IRequestLogStore:
        """A fresh, empty store (each backend provides it)."""
        raise NotImplementedError

    async def test_past_max_records_the_oldest_go_from_every_index(self) -> None:
        """Issue 10 defect 2: the log is bounded by count; the oldest records leave the
        store and every index they were in, so counts stay exact."""
        store = self.make_store(max_records=3)
        records = [
            sample(1, user="octocat", client_id="c-1", status=502, error="x"),
            sample(2, host="b.example.com"),
            sample(3),
            sample(4),
            sample(5, user="octocat"),
        ]
        await store.write(records[:2])
        await store.write(records[2:])
        cid = [r.correlation_id for r in records]
        self.assertEqual(await self.ids(store, "all", ""), cid[:1:-1])
        self.assertIsNone(await store.get(cid[0]))
        self.assertIsNone(await store.get(cid[1]))
        window = (T0 - DAY, T0 + DAY)
        self.assertEqual(await store.count("all", "", *window), 3)
        self.assertEqual(await store.count("user", "octocat", *window), 1)
        self.assertEqual(await store.count("client", "c-1", *window), 0)
        self.assertEqual(await store.count("errors", "", *window), 0)
        self.assertEqual(await store.count("status", "5xx", *window), 0)
        self.assertEqual(await store.count("host", "b.example.com", *window), 0)
        self.assertEqual(await store.count("ip", "192.0.2.10", *window), 3)

    async def test_past_max_records_within_one_batch_the_oldest_go(self) -> None:
        """The count bound is exact even when one write brings more than it allows."""
        store = self.make_store(max_records=3)
        records = [sample(n, status=500 if n == 1 else 200) for n in range(5)]
        await store.write(records)
        cid = [r.correlation_id for r in records]
        self.assertEqual(await self.ids(store, "all", ""), cid[:1:-1])
        self.assertIsNone(await store.get(cid[1]))
        self.assertEqual(await store.get(cid[2]), records[2])
        window = (T0 - DAY, T0 + DAY)
        self.assertEqual(await store.count("all", "", *window), 3)
        self.assertEqual(await store.count("status", "5xx", *window), 0)
        self.assertEqual(await store.count("status", "2xx", *window), 3)

    async def test_counts_and_pages_agree_over_many_batches(self) -> None:
        """Over records written in many batches, count() matches find() for every window,
        and paging through find() gives each record once, newest first."""
        store = self.make_store()
        records = [
            sample(n, status=404 if n % 3 == 0 else 200, client_ip=f"192.0.2.{n % 4}")
            for n in range(60)
        ]
        for start in range(0, 60, 7):
            await store.write(records[start : start + 7])
        for since, until in [(0, 59), (3, 40), (6.5, 6.5), (7, 7), (13, 29.5), (58, 90)]:
            window = (T0 + since, T0 + until)
            for index, value in [("all", ""), ("status", "4xx"), ("ip", "192.0.2.1")]:
                found = await self.ids(store, index, value, *window, count=1000)
                self.assertEqual(
                    await store.count(index, value, *window), len(found), (index, since, until)
                )
        pages = []
        for offset in range(0, 60, 9):
            pages += await self.ids(store, "all", "", offset=offset, count=9)
        self.assertEqual(pages, [r.correlation_id for r in reversed(records)])

    async def test_recent_pages_through_a_big_batch(self) -> None:
        """A follower reading small pages sees every record of a big batch once, in order."""
        store = self.make_store()
        _, cursor = await store.recent(None, 10)
        records = [sample(n) for n in range(25)]
        await store.write(records[:20])
        await store.write(records[20:])
        seen: list[RequestRecord] = []
        for _ in range(10):
            page, cursor = await store.recent(cursor, 6)
            seen += page
        self.assertEqual(seen, records)

    async def test_noise_counts_add_up_per_minute_reason_and_host(self) -> None:
        """Counted noise comes back summed per (minute, reason, host), oldest first."""
        store = self.make_store()
        minute = int(T0 // 60) * 60
        await store.count_noise(
            [
                NoiseCount(minute, "unknown_host", "x.test", 3),
                NoiseCount(minute + 60, "unauthenticated", "a.test", 1),
            ]
        )
        await store.count_noise([NoiseCount(minute, "unknown_host", "x.test", 2)])
        self.assertEqual(
            await store.noise(T0 - 60, T0 + 3600),
            [
                NoiseCount(minute, "unknown_host", "x.test", 5),
                NoiseCount(minute + 60, "unauthenticated", "a.test", 1),
            ],
        )
        self.assertEqual(
            await store.noise(minute + 60, T0 + 3600),
            [NoiseCount(minute + 60, "unauthenticated", "a.test", 1)],
        )

    async def ids(
        self,
        store: IRequestLogStore,
        index: str,
        value: str,
        since: float = T0 - DAY,
        until: float = T0 + DAY,
        offset: int = 0,
        count: int = 100,
    ) -> list[str]:
        """Correlation ids ``find`` returns, in its order."""
        found: list[RequestRecord] = await store.find(index, value, since, until, offset, count)
        return [r.correlation_id for r in found]

    async def test_written_record_comes_back_unchanged(self) -> None:
        """get() returns exactly the record written."""
        store = self.make_store()
        record = sample(1, user="octocat", client_id="c-1", upstream="http://u:1", error="x y")
        await store.write([record])
        self.assertEqual(await store.get(record.correlation_id), record)

    async def test_unknown_correlation_id_is_none(self) -> None:
        """get() of an id never written is None."""
        self.assertIsNone(await self.make_store().get("1-http-00000000"))

    async def test_empty_batch_is_fine(self) -> None:
        """Writing nothing succeeds and stores nothing."""
        store = self.make_store()
        await store.write([])
        self.assertEqual(await self.ids(store, "all", ""), [])

    async def test_each_index_finds_its_records_newest_first(self) -> None:
        """ip, host, status class, user, client, errors and all select the right records."""
        store = self.make_store()
        records = [
            sample(1),
            sample(2, client_ip="2001:db8::7", host="b.example.com", status=404),
            sample(3, user="octocat", client_id="mcp one", status=502),
            sample(4, status=201, error="upstream reset"),
        ]
        await store.write(records)
        cid = [r.correlation_id for r in records]
        self.assertEqual(await self.ids(store, "all", ""), cid[::-1])
        self.assertEqual(await self.ids(store, "ip", "192.0.2.10"), [cid[3], cid[2], cid[0]])
        self.assertEqual(await self.ids(store, "ip", "2001:db8::7"), [cid[1]])
        self.assertEqual(await self.ids(store, "host", "b.example.com"), [cid[1]])
        self.assertEqual(await self.ids(store, "status", "4xx"), [cid[1]])
        self.assertEqual(await self.ids(store, "status", "2xx"), [cid[3], cid[0]])
        self.assertEqual(await self.ids(store, "user", "octocat"), [cid[2]])
        self.assertEqual(await self.ids(store, "client", "mcp one"), [cid[2]])
        self.assertEqual(await self.ids(store, "errors", ""), [cid[3], cid[2]])

    async def test_window_bounds_are_inclusive(self) -> None:
        """find() returns records with since <= time <= until."""
        store = self.make_store()
        await store.write([sample(n) for n in range(5)])
        found = await self.ids(store, "all", "", since=T0 + 1, until=T0 + 3)
        self.assertEqual(found, [sample(n).correlation_id for n in (3, 2, 1)])

    async def test_offset_and_count_page_through(self) -> None:
        """offset skips the newest, count bounds the page."""
        store = self.make_store()
        await store.write([sample(n) for n in range(5)])
        page = await self.ids(store, "all", "", offset=1, count=2)
        self.assertEqual(page, [sample(3).correlation_id, sample(2).correlation_id])

    async def test_count_in_window(self) -> None:
        """count() agrees with find() over a window."""
        store = self.make_store()
        await store.write([sample(n, status=500 if n % 2 else 200) for n in range(6)])
        self.assertEqual(await store.count("status", "5xx", T0, T0 + 5), 3)
        self.assertEqual(await store.count("all", "", T0 + 1, T0 + 2), 2)
        self.assertEqual(await store.count("host", "nobody.example", T0, T0 + 5), 0)

    async def test_hosts_seen_since(self) -> None:
        """hosts() lists the hosts with a request at or after ``since``, sorted."""
        store = self.make_store()
        await store.write([sample(1, host="z.example"), sample(5, host="a.example")])
        await store.write([sample(9, host="z.example")])
        self.assertEqual(await store.hosts(T0 + 2), ["a.example", "z.example"])
        self.assertEqual(await store.hosts(T0 + 6), ["z.example"])

    async def test_unique_visitors_per_host_and_days(self) -> None:
        """visitors() counts distinct IPs of one host over the days asked (their union)."""
        store = self.make_store(retention=3 * DAY)
        await store.write(
            [
                sample(1, client_ip="192.0.2.1"),
                sample(2, client_ip="192.0.2.1"),
                sample(3, client_ip="192.0.2.2"),
                sample(4, client_ip="192.0.2.3", host="other.example"),
                sample(int(DAY) + 5, client_ip="192.0.2.1"),
                sample(int(DAY) + 6, client_ip="192.0.2.9"),
            ]
        )
        host = "api.example.com"
        self.assertEqual(await store.visitors(host, ["2025-01-01"]), 2)
        self.assertEqual(await store.visitors(host, ["2025-01-02"]), 2)
        self.assertEqual(await store.visitors(host, ["2025-01-01", "2025-01-02"]), 3)
        self.assertEqual(await store.visitors("other.example", ["2025-01-01"]), 1)
        self.assertEqual(await store.visitors(host, []), 0)

    async def test_rows_with_interleaved_index_values_are_found_as_written(self) -> None:
        """write_rows (the writer's batches) stores what write stores: rows of several
        IPs, hosts, users and statuses interleaved in one batch across a UTC midnight
        are each found under their own index values, and visitors count per day."""
        store = self.make_store(retention=3 * DAY)
        midnight = T0 + DAY
        records = [
            sample(0, time=midnight - 1.0, client_ip="192.0.2.1", host="b.example.com"),
            sample(1, time=midnight - 0.6, client_ip="192.0.2.2", status=404, user="octocat"),
            sample(2, time=midnight - 0.2, client_ip="192.0.2.1"),
            sample(3, time=midnight + 0.2, client_ip="192.0.2.2", status=404, user="octocat"),
            sample(4, time=midnight + 0.6, client_ip="192.0.2.3", error="upstream reset"),
        ]
        await store.write_rows([record_row(r) for r in records])
        cid = [r.correlation_id for r in records]
        window = (T0, midnight + DAY)
        self.assertEqual(await self.ids(store, "all", "", *window), cid[::-1])
        self.assertEqual(await self.ids(store, "ip", "192.0.2.1", *window), [cid[2], cid[0]])
        self.assertEqual(await self.ids(store, "ip", "192.0.2.2", *window), [cid[3], cid[1]])
        self.assertEqual(await self.ids(store, "status", "4xx", *window), [cid[3], cid[1]])
        self.assertEqual(await self.ids(store, "status", "2xx", *window), [cid[4], cid[2], cid[0]])
        self.assertEqual(await self.ids(store, "user", "octocat", *window), [cid[3], cid[1]])
        self.assertEqual(await self.ids(store, "host", "b.example.com", *window), [cid[0]])
        self.assertEqual(await self.ids(store, "host", "api.example.com", *window), cid[:0:-1])
        self.assertEqual(await self.ids(store, "errors", "", *window), [cid[4]])
        self.assertEqual(await store.count("host", "api.example.com", *window), 4)
        self.assertEqual(await store.count("ip", "192.0.2.2", *window), 2)
        around = (midnight - 0.7, midnight - 0.1)
        self.assertEqual(await store.count("host", "api.example.com", *around), 2)
        for record in records:
            self.assertEqual(await store.get(record.correlation_id), record)
        host = "api.example.com"
        self.assertEqual(await store.visitors(host, ["2025-01-01"]), 2)
        self.assertEqual(await store.visitors(host, ["2025-01-02"]), 2)
        self.assertEqual(await store.visitors(host, ["2025-01-01", "2025-01-02"]), 3)
        self.assertEqual(await store.hosts(midnight), ["api.example.com"])

    async def test_recent_follows_with_a_cursor(self) -> None:
        """recent(None) gives the newest records; the cursor then gives only newer ones."""
        store = self.make_store()
        await store.write([sample(n) for n in range(3)])
        first, cursor = await store.recent(None, 2)
        self.assertEqual(first, [sample(1), sample(2)])
        nothing, same = await store.recent(cursor, 10)
        self.assertEqual((nothing, same), ([], cursor))
        await store.write([sample(3), sample(4)])
        more, later = await store.recent(cursor, 10)
        self.assertEqual(more, [sample(3), sample(4)])
        self.assertNotEqual(later, cursor)

    async def test_recent_on_an_empty_log_gives_a_usable_cursor(self) -> None:
        """Starting to follow an empty log, the first record written is the first seen."""
        store = self.make_store()
        empty, cursor = await store.recent(None, 5)
        self.assertEqual(empty, [])
        await store.write([sample(1)])
        self.assertEqual((await store.recent(cursor, 5))[0], [sample(1)])

    async def test_records_older_than_retention_leave_the_indexes(self) -> None:
        """After a write, records older than its newest minus retention leave ``all`` and hosts.

        (On Redis, an index the write does not touch keeps its stale ids until its key
        expires; their records expire by their own TTL, so lookups skip them.)
        """
        store = self.make_store(retention=100)
        await store.write([sample(0, host="old.example"), sample(50)])
        await store.write([sample(120)])
        self.assertEqual(
            await self.ids(store, "all", ""),
            [sample(120).correlation_id, sample(50).correlation_id],
        )
        self.assertEqual(await store.hosts(0), ["api.example.com"])

    async def test_big_batch_is_written_whole(self) -> None:
        """A batch larger than one script call is stored completely."""
        store = self.make_store()
        await store.write([sample(n) for n in range(1200)])
        self.assertEqual(await store.count("all", "", T0, T0 + 1200), 1200)
