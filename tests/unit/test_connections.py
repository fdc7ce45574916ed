"""Connections the analytics and the HTTP clients share per process."""

from __future__ import annotations

import ssl
import threading

import duckdb
import pytest

from modelwarden.net import tls_context
from modelwarden.store.duckdb_sql import connect


def test_duckdb_connections_keep_their_temporary_objects_apart() -> None:
    a, b = connect(1), connect(1)
    try:
        a.execute("CREATE TEMP TABLE eff AS SELECT 1 AS x")
        b.execute("CREATE TEMP TABLE eff AS SELECT 2 AS x, 3 AS y")  # same name: no clash
        assert a.sql("SELECT * FROM eff").fetchall() == [(1,)]
        assert b.sql("SELECT * FROM eff").fetchall() == [(2, 3)]
        a.close()
        assert b.sql("SELECT x FROM eff").fetchall() == [(2,)]
    finally:
        b.close()
    c = connect(1)
    try:
        with pytest.raises(duckdb.CatalogException):
            c.sql("SELECT * FROM eff").fetchall()  # closed connections took theirs along
    finally:
        c.close()


def test_duckdb_connections_have_the_thread_count_asked_for() -> None:
    one, two = connect(1), connect(2)
    try:
        assert one.sql("SELECT current_setting('threads')").fetchall() == [(1,)]
        assert two.sql("SELECT current_setting('threads')").fetchall() == [(2,)]
        assert one.sql("SELECT current_setting('enable_progress_bar')").fetchall() == [(False,)]
    finally:
        one.close()
        two.close()


def test_duckdb_connections_from_threads_run_side_by_side() -> None:
    errors: list[BaseException] = []
    sums: list[int] = []

    def work(i: int) -> None:
        con = connect(1)
        try:
            con.execute(f"CREATE TEMP TABLE t AS SELECT range AS v FROM range({i * 1000})")
            sums.append(con.sql("SELECT sum(v) FROM t").fetchall()[0][0])
        except BaseException as exc:
            errors.append(exc)
        finally:
            con.close()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(1, 9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(sums) == sorted(n * (n - 1) // 2 for n in (i * 1000 for i in range(1, 9)))


def test_tls_context_is_made_once_and_verifies() -> None:
    ctx = tls_context()
    assert tls_context() is ctx
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.check_hostname
    assert ctx.cert_store_stats()["x509_ca"] > 0  # the authorities are loaded
