"""ntklib.parallel.map_blocks: the same results in the same order whatever the workers; torch's thread setting restored."""
import pytest
import torch

from ntklib.parallel import map_blocks, num_workers

EPS = torch.finfo(torch.float64).eps


def _block(i):
    g = torch.Generator().manual_seed(i)
    a = torch.randn(60, 40, generator=g, dtype=torch.float64)
    return i, a @ a.T, torch.get_num_threads()


def test_results_come_back_in_order_and_agree_with_a_serial_loop():
    serial = [_block(i) for i in range(7)]
    for workers in (1, 2, 3):
        got = map_blocks(_block, range(7), workers=workers)
        assert [r[0] for r in got] == list(range(7))
        for (_, a, _), (_, b, _) in zip(got, serial):  # one intra-op thread vs the default: rounding only
            torch.testing.assert_close(a, b, rtol=64 * EPS, atol=64 * EPS * float(b.abs().max()))
    if num_workers() > 1:
        assert {r[2] for r in map_blocks(_block, range(4), workers=2)} == {1}  # each worker: one intra-op thread


def test_thread_setting_is_restored_also_after_an_error_and_nested_maps_run_serially():
    before = torch.get_num_threads()

    def fails(i):
        if i == 2:
            raise RuntimeError("block 2 failed")
        return i

    with pytest.raises(RuntimeError, match="block 2 failed"):
        map_blocks(fails, range(4), workers=2)
    assert torch.get_num_threads() == before
    nested = map_blocks(lambda i: map_blocks(lambda j: i * 10 + j, range(3), workers=2), range(2), workers=2)
    assert nested == [[0, 1, 2], [10, 11, 12]]
    assert torch.get_num_threads() == before
    assert num_workers("cuda") == 1  # accelerators: blocks run in the calling thread


def _map_in_child(queue):
    queue.put([r[0] for r in map_blocks(_block, range(4), workers=2)])


def test_the_kept_pool_serves_later_maps_and_a_forked_child_gets_its_own():
    """The worker pool is kept between maps; a child forked after a map (e.g. a DataLoader worker) must
    not wait on the parent's threads, which do not exist in it."""
    import multiprocessing as mp

    assert [r[0] for r in map_blocks(_block, range(5), workers=2)] == list(range(5))
    with pytest.raises(ZeroDivisionError):
        map_blocks(lambda i: 1 / 0, range(3), workers=2)
    assert [r[0] for r in map_blocks(_block, range(3), workers=2)] == [0, 1, 2]  # still usable after an error
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_map_in_child, args=(queue,))
    child.start()
    child.join(60)
    alive = child.is_alive()
    if alive:
        child.kill()
    assert not alive, "a forked child hung in map_blocks"
    assert child.exitcode == 0 and queue.get(timeout=5) == [0, 1, 2, 3]
