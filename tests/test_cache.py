"""Response cache: keys, LRU bounds, Redis (real redis-server on 127.0.0.1), failure tolerance, URL redaction."""

from __future__ import annotations

import asyncio
import logging

import pytest

from gptoss_cli.errors import UsageError
from gptoss_cli.serve.generation.cache import (
    MemoryCache,
    RedisCache,
    cache_key,
    is_cacheable,
    open_cache,
    redact_url,
)
from gptoss_cli.serve.engines.interface import SamplingParams
from tests.redis_fixtures import redis_server, redis_url  # noqa: F401 - fixtures

pytestmark = pytest.mark.timeout(60)

GREEDY = SamplingParams(max_tokens=16, temperature=0.0, stop_token_ids=(200002, 200012))


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


def test_only_deterministic_requests_are_cacheable():
    assert is_cacheable(GREEDY)
    assert is_cacheable(SamplingParams(max_tokens=4, temperature=0.8, seed=7))
    assert not is_cacheable(SamplingParams(max_tokens=4, temperature=0.8))
    assert cache_key("m", [1, 2], SamplingParams(max_tokens=4, temperature=0.8)) is None


def test_key_depends_on_everything_that_changes_the_output():
    base = cache_key("m", [1, 2, 3], GREEDY)
    assert base and base.startswith("gptoss:resp:v2:") and len(base) == len("gptoss:resp:v2:") + 64
    assert cache_key("m", [1, 2, 3], GREEDY) == base
    assert cache_key("other-model", [1, 2, 3], GREEDY) != base
    assert cache_key("m", [1, 2, 4], GREEDY) != base
    assert cache_key("m", [1, 2, 3], SamplingParams(max_tokens=17, temperature=0.0,
                                                   stop_token_ids=(200002, 200012))) != base
    assert cache_key("m", [1, 2, 3], SamplingParams(max_tokens=16, temperature=0.0, frequency_penalty=0.5,
                                                   stop_token_ids=(200002, 200012))) != base
    seeded = cache_key("m", [1, 2, 3], SamplingParams(max_tokens=16, temperature=0.7, seed=1))
    assert seeded != cache_key("m", [1, 2, 3], SamplingParams(max_tokens=16, temperature=0.7, seed=2))
    assert seeded != cache_key("m", [1, 2, 3], SamplingParams(max_tokens=16, temperature=0.8, seed=1))


def test_greedy_key_ignores_irrelevant_sampling_fields():
    a = SamplingParams(max_tokens=8, temperature=0.0, top_p=0.5, seed=3, stop_token_ids=(2, 1))
    b = SamplingParams(max_tokens=8, temperature=0.0, top_p=1.0, seed=None, stop_token_ids=(1, 2))
    assert cache_key("m", [5], a) == cache_key("m", [5], b)


def test_key_never_contains_prompt_text_or_ids():
    key = cache_key("m", [104, 101, 108, 108, 111], GREEDY)
    assert all(c in "0123456789abcdef" for c in key.rsplit(":", 1)[1])


def test_memory_cache_lru_by_entries():
    async def main():
        c = MemoryCache(max_entries=2, max_bytes=1 << 20)
        await c.put("a", [1])
        await c.put("b", [2])
        assert await c.get("a") == [1]  # a is now most recent
        await c.put("c", [3])
        assert await c.get("b") is None
        assert await c.get("a") == [1] and await c.get("c") == [3]
        assert len(c) == 2

    run(main())


def test_memory_cache_bounded_by_bytes():
    async def main():
        c = MemoryCache(max_entries=1000, max_bytes=2000)
        for i in range(20):
            await c.put(f"k{i}", list(range(100)))  # ~400 bytes + overhead each
        assert c.bytes <= 2000
        assert 1 <= len(c) <= 4
        assert await c.get("k19") == list(range(100))
        await c.put("huge", list(range(10_000)))  # bigger than the cache: not stored, nothing evicted
        assert await c.get("huge") is None and await c.get("k19") is not None
        await c.put("k19", [1, 2])  # replace keeps the byte count right
        assert await c.get("k19") == [1, 2]
        before = c.bytes
        await c.put("k19", [1, 2])
        assert c.bytes == before

    run(main())


def test_large_token_ids_roundtrip():
    async def main():
        c = MemoryCache()
        ids = [0, 199998, 200002, 201087, 2**32 - 1]
        await c.put("k", ids)
        assert await c.get("k") == ids

    run(main())


def test_open_cache_choices():
    assert open_cache(None, enabled=False) is None
    assert isinstance(open_cache(None), MemoryCache)
    assert isinstance(open_cache("redis://127.0.0.1:1/0"), RedisCache)
    with pytest.raises(UsageError) as info:
        open_cache("http://user:hunter2@example.invalid/")
    assert "hunter2" not in str(info.value)


def test_redact_url_hides_credentials():
    assert redact_url("redis://user:hunter2@cache.local:6380/2") == "redis://***@cache.local:6380/2"
    assert redact_url("redis://:hunter2@cache.local/0?x=1") == "redis://***@cache.local/0"
    assert redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_redis_roundtrip_and_ttl(redis_url):  # noqa: F811
    async def main():
        c = open_cache(redis_url, ttl=60)
        assert isinstance(c, RedisCache)
        assert await c.ping()
        key = cache_key("m", [1, 2, 3], GREEDY)
        assert await c.get(key) is None
        await c.put(key, [200005, 1, 2, 200002])
        assert await c.get(key) == [200005, 1, 2, 200002]
        ttl = await c._client.ttl(key)
        assert 0 < ttl <= 60
        # a second client (another server) sees the same entry
        other = RedisCache(redis_url)
        assert await other.get(key) == [200005, 1, 2, 200002]
        await other.close()
        await c.close()

    run(main())


def test_redis_down_is_a_miss_not_an_error(caplog):
    async def main():
        from tests.ports import free_port as _free_port

        c = RedisCache(f"redis://user:hunter2@127.0.0.1:{_free_port()}/0", timeout=0.2)
        assert await c.get("k") is None
        await c.put("k", [1, 2])
        assert not await c.ping()
        await c.close()

    with caplog.at_level(logging.WARNING, logger="gptoss.serve.cache"):
        run(main())
    assert "serving without the cache" in caplog.text
    assert "hunter2" not in caplog.text


MALFORMED = [b"garbage", b"\x01\x02\x03", b"12345678", b"", b"\xff" * 4096 + b"x"]


def test_malformed_redis_values_are_misses(redis_url, caplog):  # noqa: F811
    """Whatever another program (or an older version) left under our key is a miss, never a failed request."""
    import redis

    async def main():
        c = RedisCache(redis_url)
        key = cache_key("m", [1, 2, 3], GREEDY)
        raw = redis.Redis.from_url(redis_url)
        for value in MALFORMED:
            raw.set(key, value)
            assert await c.get(key) is None, value
        raw.delete(key)
        raw.rpush(key, b"not", b"a", b"string")  # WRONGTYPE on GET
        assert await c.get(key) is None
        raw.delete(key)
        await c.put(key, [200005, 7, 200002])
        assert await c.get(key) == [200005, 7, 200002]
        raw.close()
        await c.close()

    with caplog.at_level(logging.WARNING, logger="gptoss.serve.cache"):
        run(main())
    assert "serving without the cache" in caplog.text


def test_malformed_memory_values_are_misses_and_dropped():
    async def main():
        c = MemoryCache()
        for value in MALFORMED:
            await c.put("k", [1, 2])
            c._data["k"] = value
            assert await c.get("k") is None
            assert "k" not in c._data
        await c.put("k", [1, 2])
        assert await c.get("k") == [1, 2]

    run(main())
