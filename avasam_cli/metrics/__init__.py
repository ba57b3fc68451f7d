"""Prometheus metrics for `listen --metrics-port`.

Every process of a listener (the receivers, their store writers, the delivery runner,
the supervisors) counts in `counts`, with the standard library only and a dict
increment on the request path.  Each writes its totals to a file of its own in the
listener's metrics folder about once a second; `exposition`, in the listener,
serves `GET /metrics` on a socket of its own, summing those files (a scrape sees
every process, those restarted included) and reading the outbox's gauges from the
store.  Only `exposition` imports prometheus_client, and only when metrics are asked
for.
"""
