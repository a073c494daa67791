#!/usr/bin/python3
"""Debian's prometheus-pgbouncer-exporter 1.7, adapted to PgBouncer 1.18's SHOW views.

The packaged exporter reads SHOW STATS columns that PgBouncer renamed in 1.14
(total_requests became total_xact_count and total_query_count) and fails on
its first scrape with KeyError: 'total_requests'.  This starts the same
exporter with the column maps of the PgBouncer Debian 12 ships, plus the pool
columns the alerts need (the oldest client's wait, the server connections).
Nothing else of the package is changed.
"""

import sys

from prometheus_pgbouncer_exporter import cli, collectors

collectors.StatsCollector.metrics = {
    "total_xact_count": ("transactions_total", "Transactions pooled by PgBouncer"),
    "total_query_count": ("queries_total", "SQL queries pooled by PgBouncer"),
    "total_received": ("received_bytes_total", "Bytes of network traffic received by PgBouncer"),
    "total_sent": ("sent_bytes_total", "Bytes of network traffic sent by PgBouncer"),
    "total_query_time": ("query_microseconds_total", "Microseconds spent connected to PostgreSQL running queries"),
    "total_wait_time": ("client_wait_microseconds_total", "Microseconds clients spent waiting for a server connection"),
}
collectors.PoolsCollector.metrics = {
    "cl_active": ("active_clients", "Client connections linked to a server connection"),
    "cl_waiting": ("waiting_clients", "Client connections that sent queries and wait for a server connection"),
    "sv_active": ("active_servers", "Server connections linked to a client"),
    "sv_idle": ("idle_servers", "Server connections idle and ready"),
    "maxwait": ("max_wait_seconds", "How long the oldest waiting client has waited"),
}

if __name__ == "__main__":
    sys.exit(cli.main())
