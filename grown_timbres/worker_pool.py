"""Work spread over processes that the stop button stops: a KeyboardInterrupt in the caller
cancels what is queued and ends the workers in the middle of a job, at once, instead of
waiting for every queued job to finish.

    run_jobs(function, jobs [J] of argument tuples, n_workers) -> [function(*job) for job in jobs]
"""
from __future__ import annotations

import signal


def ignore_interrupts() -> None:
    """A worker's initializer: Ctrl-C in a terminal reaches every process of the group, and
    only the caller decides what a stop does (a worker's own KeyboardInterrupt would end it in
    the middle of a job and break the pool)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def interrupted(err: BaseException) -> bool:
    """Whether a KeyboardInterrupt is in err's chain: an interrupt that arrives inside numba's
    compiled code comes out as numba's SystemError ("returned a result with an exception
    set"), caused by the KeyboardInterrupt."""
    while err is not None:
        if isinstance(err, KeyboardInterrupt):
            return True
        err = err.__cause__ or err.__context__
    return False


def run_here(function, jobs, on_done=None) -> list:
    """[function(*job) for job in jobs] in this process, in order; on_done() after each. A stop
    is raised as KeyboardInterrupt, also when it arrived inside compiled code."""
    results = []
    for job in jobs:
        try:
            results.append(function(*job))
        except SystemError as err:
            if interrupted(err):
                raise KeyboardInterrupt from None
            raise
        if on_done is not None:
            on_done()
    return results


def stop_workers(pool) -> None:
    """Cancel a ProcessPoolExecutor's queued jobs and end its workers now."""
    terminate = getattr(pool, "terminate_workers", None)  # Python 3.14
    if terminate is not None:
        terminate()
        return
    processes = list((pool._processes or {}).values())  # the only handle before 3.14
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()
    for process in processes:
        process.join()


def run_jobs(function, jobs, n_workers: int, on_done=None) -> list:
    """[function(*job) for job in jobs], in `n_workers` processes when that is more than one
    (forked where the system can fork; `function` and its results must pickle), else here
    (run_here). on_done() after each job. A KeyboardInterrupt (the stop button) stops every
    worker at once and is raised again; the jobs finished by then have done what they do."""
    if n_workers <= 1:
        return run_here(function, jobs, on_done)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # fork where there is one: spawn would re-run a calling script that lacks a __main__ guard
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    pool = ProcessPoolExecutor(n_workers, mp_context=context, initializer=ignore_interrupts)
    try:
        futures = [pool.submit(function, *job) for job in jobs]
        if on_done is not None:
            for future in futures:
                future.add_done_callback(lambda _: on_done())
        results = [future.result() for future in futures]
    except BaseException:
        stop_workers(pool)
        raise
    pool.shutdown()
    return results
