"""The producer's partitioner puts every keyed record where aiokafka's default (the Java
client's murmur2) would: the events topic's partitioning is a contract with the fold, which
keeps a recipient's events in order within one partition."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as reference_murmur2
from hypothesis import given
from hypothesis import strategies as st

from service.kafka import Partitioner, murmur2


@given(st.binary(max_size=200))
def test_murmur2_is_kafkas(key: bytes) -> None:
    assert murmur2(key) == reference_murmur2(key)


@given(st.lists(st.binary(max_size=80), max_size=50), st.integers(1, 64))
def test_keyed_records_land_where_the_default_partitioner_puts_them(
    keys: list[bytes], count: int
) -> None:
    ours, default = Partitioner(), DefaultPartitioner()
    partitions = list(range(count))
    for key in keys + keys:  # the second round is answered from memory
        assert ours(key, partitions, partitions) == default(key, partitions, partitions)


def test_a_remembered_key_follows_a_change_in_partition_count() -> None:
    ours, default = Partitioner(), DefaultPartitioner()
    key = b"acme:d1:john.doe@example.com"
    for count in (4, 6, 4):
        partitions = list(range(count))
        assert ours(key, partitions, partitions) == default(key, partitions, partitions)


def test_keyless_records_go_to_an_available_partition() -> None:
    assert Partitioner()(None, [0, 1, 2, 3], [2]) == 2
