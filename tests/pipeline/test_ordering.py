import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.ordering import in_read_order


@given(st.permutations(list(range(12))))
def test_records_come_out_in_read_order_whatever_order_they_finish_in(finishing):
    read_order = [f"doc-{i}" for i in range(12)]
    finished = [(f"doc-{i}", f"record of {i}") for i in finishing]
    out = list(in_read_order(finished, read_order, lambda r: r[0]))
    assert out == [(f"doc-{i}", f"record of {i}") for i in range(12)]


def test_a_record_is_released_as_soon_as_everything_read_before_it_has_finished():
    released = []
    stream = in_read_order(iter([("b", 1), ("a", 2), ("d", 3), ("c", 4)]), ["a", "b", "c", "d"], lambda r: r[0])
    released.append(next(stream))  # "b" waits for "a"; both come out once "a" has finished
    assert released == [("a", 2)]
    assert next(stream) == ("b", 1)
    assert list(stream) == [("c", 4), ("d", 3)]


def test_a_document_finishing_twice_or_never_is_an_error():
    with pytest.raises(ValueError, match="'a' finished twice"):
        list(in_read_order([("a", 1), ("a", 2)], ["a", "b"], lambda r: r[0]))
    with pytest.raises(ValueError, match=r"documents \['a'\] never finished"):
        list(in_read_order([("b", 1)], ["a", "b"], lambda r: r[0]))
